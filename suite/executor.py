"""Where a selection's artifacts are built: ``--executor local`` (the default) or ``--executor ray``.

local: as always, each case builds what it needs when it runs (pytest-xdist spreads the cases).

ray: after collection the plan (``suite.plan``) of the selection is made and every planned
artifact that is not cached is submitted as one Ray task, in dependency order (training ->
extraction -> retraining: a task gets its dependencies' results as arguments, so Ray starts it
when they are done), deduplicated by artifact key at submission (one task per key: no two nodes
build the same artifact, and no file lock over network storage is relied on). Each task runs the
code the cases run (``suite.plan.build_node``) on the cluster's node, which writes its artifact
atomically into the shared cache (``suite.cache``: temp file, fsync, rename; meta.json last, so
a killed task leaves nothing a later run loads). Then the cases run as always and read from the
cache. Resource requests: ``--threads`` CPUs per task on CPU; on CUDA one GPU per task, or a
quarter of one for models under ``suite.plan.SMALL_MODEL_PARAMS`` parameters
(``--ray-gpus-per-task`` overrides). A task whose worker dies is retried (Ray's ``max_retries``,
``--ray-retries``); a task that raises is not retried, and its error (node, traceback) is shown on
every case that needed the artifact, and on the cases of every artifact derived from it.

``--ray-address`` (or ``RAY_ADDRESS``) names the cluster; with neither a local Ray instance is
started for the run and stopped after the builds. ``--cache-dir`` must be on storage every node
sees at the same path: checked at start-up (a file written here must be readable on each node).
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

log = logging.getLogger("saliencybench")

EXECUTORS = ("local", "ray")
INSTALL_HINT = ("install it with: pip install -e '.[ray]' (from a checkout) or "
                "pip install 'ray[default]>=2.9'")
DEVICE_KEY = "saliencybench.device"


class RemoteBuildError(RuntimeError):
    """A planned artifact a case needs failed to build on the Ray cluster."""


class SharedCacheError(RuntimeError):
    """The cluster cannot be used: not reachable, or a node cannot see the run's cache directory
    (a usage error before any case runs)."""


def addoption(group) -> None:
    group.addoption("--executor", dest="sb_executor", choices=EXECUTORS, default="local",
                    help="where the artifacts (trainings, attributions, retrainings) are built: "
                         "local (each case builds what it needs, as it runs) or ray (the plan's "
                         "uncached artifacts as Ray tasks on a cluster first, into a shared "
                         "--cache-dir). Default: local")
    group.addoption("--ray-address", dest="sb_ray_address", default=None,
                    help="the Ray cluster for --executor ray (e.g. 10.0.0.5:6379). "
                         "Default: $RAY_ADDRESS, else a local Ray instance for this run")
    group.addoption("--ray-retries", dest="sb_ray_retries", type=int, default=3,
                    help="times a Ray task is retried when its worker or node dies (Ray's "
                         "max_retries; a task that raises is not retried). Default: 3")
    group.addoption("--ray-gpus-per-task", dest="sb_ray_gpus", type=float, default=None,
                    help="GPUs each Ray task requests with --device cuda. Default: 0.25 for models "
                         "under 5M parameters, else 1")
    group.addoption("--plan", dest="sb_plan", action="store_true", default=False,
                    help="print the cases, trainings, retrainings and attribution passes the "
                         "selection needs, what is cached and an estimate of the build time; run "
                         "nothing, exit 0 (-v lists every artifact). Default: off")


def check_options(config: pytest.Config) -> None:
    """Usage errors before collection."""
    executor = config.getoption("sb_executor")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise pytest.UsageError(f"--executor ray: Ray is not installed; {INSTALL_HINT}") from None
    if config.getoption("sb_ray_retries") < 0:
        raise pytest.UsageError(f"--ray-retries {config.getoption('sb_ray_retries')}: must be >= 0")
    gpus = config.getoption("sb_ray_gpus")
    if gpus is not None and not 0 < gpus <= 64:
        raise pytest.UsageError(f"--ray-gpus-per-task {gpus}: must be > 0 (a fraction of one GPU "
                                "such as 0.25, or a count)")
    if config.getoption("sb_plan") and (config.getoption("numprocesses", None) or 0):
        raise pytest.UsageError("--plan runs in one process: drop -n")


# -- pytest hooks -----------------------------------------------------------------------------

class Hooks:
    """Registered by the plugin in every process (``suite.plugin.pytest_configure``)."""

    def __init__(self, config: pytest.Config, context_from_config):
        self.config = config
        self._context = context_from_config      # the plugin's (not imported: no import circle)
        self.plan = None
        self.failures: dict[str, str] = {}      # nodeid -> remote failure text

    def _write(self, line: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and not hasattr(self.config, "workerinput"):
            tr.write_line(line)
        else:
            log.info("%s", line)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        config = session.config
        if not (config.getoption("sb_plan") or config.getoption("sb_executor") == "ray"):
            return
        from suite.plan import build_plan, items_cases

        ctx = self._context(config)
        if config.getoption("sb_plan"):
            self.plan = build_plan(items_cases(session.items), ctx)
            return
        if hasattr(config, "workerinput"):      # xdist: the first worker builds, the others wait
            from filelock import FileLock

            done = ctx.cache.root / f".executor-{ctx.run_id}.json"
            with FileLock(str(done) + ".lock"):
                if done.exists():
                    self.failures = json.loads(done.read_text())
                    return
                self.failures = self._run_ray(session, ctx)
                from suite.cache import atomic_write

                atomic_write(done, lambda p: p.write_text(json.dumps(self.failures)))
            return
        self.failures = self._run_ray(session, ctx)

    def _run_ray(self, session, ctx) -> dict[str, str]:
        from suite.plan import build_plan, items_cases

        plan = build_plan(items_cases(session.items), ctx, estimate=False)
        config = session.config
        try:
            return run_on_ray(plan, ctx, address=config.getoption("sb_ray_address"),
                              retries=config.getoption("sb_ray_retries"),
                              gpus_per_task=config.getoption("sb_ray_gpus"), progress=self._write)
        except SharedCacheError as err:
            raise pytest.UsageError(str(err)) from None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session):
        if self.plan is None:
            return None
        for line in self.plan.lines(verbose=self.config.getoption("verbose") > 0):
            self._write(line)
        return True          # run nothing: exit 0 (the items were collected)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if any(k == "saliencybench.case" for k, _ in item.user_properties):
            item.user_properties.append((DEVICE_KEY, self.config.getoption("sb_device")))
        text = self.failures.get(item.nodeid)
        if text:
            raise RemoteBuildError(text)


# -- Ray --------------------------------------------------------------------------------------

def registrations() -> list[tuple[str, str, str]]:
    """(kind, id, source file) of every registered dataset, model and method that is not built
    in (a user's conftest or plugin): Ray workers import those files to see the same registry."""
    from suite import registry
    from suite.matrix import is_builtin

    out = []
    for kind, table in registry._TABLES.items():
        for name, spec in table.items():
            if is_builtin(kind, name):
                continue
            fn = getattr(spec, "load", None) or getattr(spec, "factory", None) or \
                getattr(spec, "explain", None)
            try:
                path = inspect.getsourcefile(fn) if fn is not None else None
            except TypeError:
                path = None
            if path:
                out.append((kind, name, str(Path(path).resolve())))
    return out


def _import_registrations(regs: list) -> None:
    """Import the files of the entries in ``regs`` that this process has not registered."""
    import hashlib
    import importlib.util

    from suite import registry
    from suite.matrix import load_builtins

    load_builtins()
    done: set[str] = set()
    for kind, name, path in regs:
        if name in registry._TABLES[kind] or path in done:
            continue
        done.add(path)
        mod_name = "_sb_registrations_" + hashlib.sha256(path.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)


def _where() -> str:
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - informational only
        ip = socket.gethostname()
    return f"{ip} (pid {os.getpid()})"


def remote_build(settings: dict, task: dict, node_id: str, *deps: dict) -> dict:
    """The body of one Ray task: build ``task`` unless a dependency failed; never raises (the
    result says what failed where), so the driver can attach it to the cases."""
    for d in deps:
        if not d.get("ok"):
            return {"ok": False, "id": node_id, "where": d.get("where"),
                    "upstream": d.get("upstream") or d["id"], "error": d.get("error")}
    where = _where()
    t0 = time.perf_counter()
    try:
        from suite.data.base import Context
        from suite.plan import build_node

        _import_registrations(settings["registrations"])
        kw = dict(settings["ctx"])
        if str(kw["device"]).startswith("cuda"):
            kw["device"] = "cuda"          # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU(s)
        t1 = time.perf_counter()           # after the imports a fresh worker process pays once
        build_node(Context(**kw), task)
    except Exception:  # noqa: BLE001 - reported on the cases that need the artifact
        import sys

        exc = sys.exc_info()[1]
        return {"ok": False, "id": node_id, "where": where,
                "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
    return {"ok": True, "id": node_id, "where": where, "seconds": time.perf_counter() - t1,
            "setup": t1 - t0}


def _probe_file(path: str, token: str) -> str | None:
    try:
        return None if Path(path).read_text() == token else "the file read back differs"
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def check_shared_cache(cache_dir: Path) -> None:
    """Every alive node of the connected cluster reads a file written here in ``cache_dir``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probe = Path(cache_dir) / f".ray-probe-{token}"
    probe.write_text(token)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        fn = ray.remote(_probe_file)
        refs = [fn.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(probe), token) for n in nodes]
        bad = [(n["NodeManagerAddress"], r) for n, r in zip(nodes, ray.get(refs, timeout=300)) if r]
    finally:
        probe.unlink(missing_ok=True)
    if bad:
        raise SharedCacheError(
            f"--cache-dir {cache_dir} is not visible from Ray node(s) "
            + "; ".join(f"{ip}: {why}" for ip, why in bad)
            + ". With --executor ray the cache must be a shared file system path that every node "
              "mounts at the same place (e.g. NFS: --cache-dir /shared/sb)")


def _settings(ctx) -> dict:
    return {"ctx": {"scale": ctx.scale, "device": ctx.device, "seeds": list(ctx.seeds),
                    "data_root": str(ctx.data_root), "download": False,
                    "cache_dir": str(Path(ctx.cache_dir).resolve()), "rebuild": ctx.rebuild,
                    "image_folder": None if ctx.image_folder is None else str(ctx.image_folder),
                    "image_size": ctx.image_size, "run_id": ctx.run_id, "threads": ctx.threads},
            "registrations": registrations()}


def run_on_ray(plan, ctx, *, address: str | None = None, retries: int = 3,
               gpus_per_task: float | None = None,
               progress: Callable[[str], None] = print) -> dict[str, str]:
    """Build ``plan``'s uncached nodes as Ray tasks; returns {case nodeid: failure text}."""
    import ray

    from suite.plan import SMALL_MODEL_PARAMS

    todo = plan.to_build()
    started = False
    if not ray.is_initialized():
        addr = address or os.environ.get("RAY_ADDRESS") or "local"
        kw: dict[str, Any] = {"include_dashboard": False} if addr == "local" else {}
        _reachable(addr)
        try:
            ray.init(address=addr, log_to_driver=False, logging_level=logging.WARNING, **kw)
        except ConnectionError as err:
            raise SharedCacheError(
                f"--executor ray: cannot connect to the Ray cluster at {addr} ({err}). Check "
                "--ray-address / RAY_ADDRESS (the head's address, e.g. 10.0.0.5:6379, as `ray "
                "start --head` prints it); a cluster with token authentication also needs "
                "RAY_AUTH_MODE=token and its token (see Ray's docs on token auth)") from None
        started = True
    try:
        check_shared_cache(ctx.cache.root)
        if not todo:
            progress(f"ray: nothing to build ({len(plan.nodes)} planned artifact(s), all cached)")
            return {}
        settings = _settings(ctx)
        fn = ray.remote(remote_build)
        cuda = str(ctx.device).startswith("cuda")
        refs: dict[str, Any] = {}
        for node in todo:           # plan order: a node's dependencies come before it
            opts: dict[str, Any] = {"max_retries": retries, "retry_exceptions": False,
                                    "name": node.label[:120]}
            if cuda:
                opts["num_cpus"] = 1
                opts["num_gpus"] = gpus_per_task or (0.25 if node.params < SMALL_MODEL_PARAMS else 1)
            else:
                opts["num_cpus"] = ctx.threads
            deps = [refs[d] for d in node.deps if d in refs]
            refs[node.id] = fn.options(**opts).remote(settings, node.task, node.id, *deps)
        progress(f"ray: {len(refs)} build task(s) submitted to {_cluster()} "
                 f"({len(plan.nodes) - len(todo)} cached)")
        pending = {r: i for i, r in refs.items()}
        results: dict[str, dict] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for r in ready:
                nid = pending.pop(r)
                try:
                    res = ray.get(r)
                except Exception as err:  # noqa: BLE001 - retries spent, node lost, ...
                    res = {"ok": False, "id": nid, "where": "unknown (the task's worker died)",
                           "error": f"{type(err).__name__}: {err}"}
                results[nid] = res
                node = plan.nodes[nid]
                n = len(results)
                if res["ok"]:
                    setup = f" (+{res['setup']:.1f}s worker start-up)" if res["setup"] >= 0.5 else ""
                    progress(f"ray: built {node.label} on {res['where']} in {res['seconds']:.1f}s"
                             f"{setup} [{n}/{len(refs)}]")
                elif res.get("upstream"):
                    progress(f"ray: not built {node.label}: it needs {plan.nodes[res['upstream']].label}, "
                             f"which failed [{n}/{len(refs)}]")
                else:
                    progress(f"ray: FAILED {node.label} on {res['where']} [{n}/{len(refs)}]")
    finally:
        if started:
            ray.shutdown()
    return case_failures(plan, results)


def case_failures(plan, results: dict[str, dict]) -> dict[str, str]:
    """{case nodeid: text} for every case that needs a node whose build failed."""
    out: dict[str, str] = {}
    for nid, res in results.items():
        if res.get("ok"):
            continue
        node = plan.nodes[nid]
        if res.get("upstream"):
            up = plan.nodes[res["upstream"]]
            text = (f"{node.label} was not built: it depends on {up.label}, whose remote build "
                    f"failed on {res.get('where')}:\n{res.get('error')}")
        else:
            text = f"remote build of {node.label} failed on {res.get('where')}:\n{res.get('error')}"
        for case in node.cases:
            out.setdefault(case, text)
    return out


def _reachable(addr: str) -> None:
    """A quick TCP check of a ``host:port`` address (Ray itself retries for minutes)."""
    hostport = addr.split("://", 1)[-1]
    if addr in ("local", "auto") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as err:
        raise SharedCacheError(f"--executor ray: cannot reach the Ray cluster at {addr} "
                               f"({type(err).__name__}: {err}); check --ray-address / RAY_ADDRESS "
                               "(the head's address as `ray start --head` prints it)") from None


def _cluster() -> str:
    import ray

    try:
        r = ray.cluster_resources()
        return (f"{len([n for n in ray.nodes() if n.get('Alive')])} node(s), "
                f"{r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU")
    except Exception:  # noqa: BLE001 - informational only
        return "the cluster"
