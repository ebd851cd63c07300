"""The build plan (--plan), the Ray executor (--executor ray) and the device per xdist worker.

The plan and executor tests run the suite's ROAR and KAR case files on a tiny registered dataset
and model (tests/data/executor_conftest.py), so every build is a fraction of a second. The Ray
tests start one real local Ray instance for the module (never a mock) and skip when Ray is not
installed (pip install -e '.[ray]').
"""
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from suite import devices, executor

ROOT = Path(__file__).resolve().parents[1]
SEL = "tinyset and tinynet and (random or gradient)"
KINDS = ("models", "attributions", "roar", "road")


# -- the device per worker (pure) -------------------------------------------------------------

@pytest.mark.parametrize("gpus,expected", [
    (1, ["cuda:0"] * 6),
    (2, ["cuda:0", "cuda:1"] * 3),
    (4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]),
])
def test_cuda_puts_worker_i_on_gpu_i_mod_g(gpus, expected):
    assert [devices.worker_device("cuda", i, gpus) for i in range(6)] == expected
    assert devices.worker_device("cuda", None, gpus) == "cuda"     # no xdist: as before


@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_single_devices_are_the_same_for_every_worker(gpus):
    for opt in ("cpu", "mps", "cuda:0", f"cuda:{gpus - 1}"):
        assert {devices.worker_device(opt, i, gpus) for i in (None, 0, 1, 5)} == {opt}


def test_a_list_is_dealt_round_robin_and_checked():
    assert [devices.worker_device("cuda:1,cuda:3", i, 4) for i in range(5)] == \
        ["cuda:1", "cuda:3", "cuda:1", "cuda:3", "cuda:1"]
    assert devices.worker_device("cuda:1,cuda:0", None, 2) == "cuda:1"
    with pytest.raises(ValueError, match=r"cuda:2 is not visible here \(2 CUDA device\(s\): cuda:0..cuda:1\)"):
        devices.worker_device("cuda:0,cuda:2", 0, 2)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        devices.worker_device("cuda", 0, 0)
    for bad in ("gpu", "cuda:0,cpu", "cuda,cuda:1", "cuda:0,", "cpu,cpu"):
        with pytest.raises(ValueError, match=f"invalid --device '{re.escape(bad)}'.*cuda:0,cuda:1"):
            devices.parse(bad)
    assert devices.worker_index("gw12") == 12 and devices.worker_index(None) is None


# -- option checks ----------------------------------------------------------------------------

def _config(**opts):
    base = {"sb_executor": "local", "sb_ray_retries": 3, "sb_ray_gpus": None, "sb_plan": False,
            "numprocesses": None}
    base.update(opts)
    return SimpleNamespace(getoption=lambda name, default=None: base.get(name, default))


def test_executor_ray_without_ray_is_a_usage_error_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)        # import ray -> ImportError
    with pytest.raises(pytest.UsageError, match=r"Ray is not installed; install it with: "
                                                r"pip install -e '\.\[ray\]'"):
        executor.check_options(_config(sb_executor="ray"))
    executor.check_options(_config())                    # local needs no Ray
    with pytest.raises(pytest.UsageError, match="--plan runs in one process: drop -n"):
        executor.check_options(_config(sb_plan=True, numprocesses=2))
    with pytest.raises(pytest.UsageError, match="--ray-gpus-per-task 0.0: must be > 0"):
        executor.check_options(_config(sb_ray_gpus=0.0))


def test_an_unreachable_cluster_is_named_at_once():
    with pytest.raises(executor.SharedCacheError, match=r"cannot reach the Ray cluster at "
                                                        r"127\.0\.0\.1:1 \(ConnectionRefusedError"):
        executor._reachable("127.0.0.1:1")
    executor._reachable("local")


def test_a_node_that_cannot_read_the_cache_is_named(tmp_path):
    (tmp_path / "probe").write_text("abc")
    assert executor._probe_file(str(tmp_path / "probe"), "abc") is None
    assert "differs" in executor._probe_file(str(tmp_path / "probe"), "xyz")
    assert executor._probe_file(str(tmp_path / "nowhere"), "abc").startswith("FileNotFoundError")


# -- runs of the case files on the tiny selection ---------------------------------------------

def _project(where: Path) -> Path:
    (where / "cases").mkdir(parents=True)
    (where / "markers").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "executor_conftest.py", where / "conftest.py")
    for f in ("test_roar.py", "test_kar.py"):
        shutil.copy(ROOT / "cases" / f, where / "cases" / f)
    return where


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["RAY_AUTH_MODE"] = "token"      # Ray >= 2.5x: the local test cluster uses token auth
    cmd = [sys.executable, "-m", "pytest", "cases", "-p", "no:cacheprovider", "--scale", "smoke",
           "--data-root", "nodata", "--allow-verdicts", "-q", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def _planned(out: str) -> dict[str, int]:
    m = re.search(r"^plan: to build: (.*)$", out, re.M)
    assert m, out[-3000:]
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def _builds(cache: Path) -> list[dict]:
    path = cache / "builds.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _cases(project: Path, report: str) -> dict[str, dict]:
    res = json.loads((project / report / "results.json").read_text())
    return {c["nodeid"].split("[")[1].rstrip("]") + "/" + c["metric"]: c for c in res["cases"]}


def _plan_here(cache: Path, methods=("random", "gradient"), roar_only=()):
    """The plan of the tiny selection made in this process (registry: the project's conftest)."""
    from suite.data.base import Context
    from suite.plan import build_plan
    from suite.matrix import cases_for

    executor._import_registrations([("dataset", "tinyset", str(ROOT / "tests/data/executor_conftest.py"))])
    cases = [(f"{c.metric}[{c.id}]", c) for m in ("roar", "kar") for c in cases_for(m, "smoke")
             if c.dataset == "tinyset" and c.model == "tinynet"
             and (c.method in methods or c.method in roar_only and m == "roar")]
    ctx = Context(scale="smoke", cache_dir=cache, data_root=cache / "nodata")
    return build_plan(cases, ctx, estimate=False), ctx


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """--plan, a local run, --plan again: on the tiny ROAR + KAR selection, one fresh cache."""
    p = _project(tmp_path_factory.mktemp("local"))
    before = _pytest(p, "-k", SEL, "--cache-dir", "cache", "--plan")
    planned_builds = _builds(p / "cache")
    run = _pytest(p, "-k", SEL, "--cache-dir", "cache", "--report-dir", "report")
    return SimpleNamespace(project=p, before=before, run=run, planned_builds=planned_builds,
                           builds=_builds(p / "cache"), cases=_cases(p, "report"))


def test_the_plan_counts_what_the_run_then_builds(local, cleanup):
    assert local.before.returncode == 0, local.before.stdout[-3000:]
    assert "saliencybench plan: 4 case(s)" in local.before.stdout
    assert local.planned_builds == [] and " passed" not in local.before.stdout   # ran nothing
    assert local.run.returncode == 0, local.run.stdout[-3000:]
    built = Counter(b["kind"] for b in local.builds)
    # 1 training; random and gradient on 2 splits; (random, gradient) x (ROAR, KAR) x 3 fractions
    assert _planned(local.before.stdout) == {"models": 1, "attributions": 4, "roar": 12, "road": 0}
    assert _planned(local.before.stdout) == {k: built.get(k, 0) for k in KINDS}
    assert len({(b["kind"], b["key"]) for b in local.builds}) == len(local.builds)
    # after the run the plan finds everything in the cache (so its keys are the run's keys)
    after, _ = _plan_here(local.project / "cache")
    assert {k: v["build"] for k, v in after.counts().items()} == dict.fromkeys(KINDS, 0)
    assert after.counts()["roar"] == {"needed": 12, "cached": 12, "build": 0}
    keys = {b["key"] for b in local.builds}
    assert {n.key for n in after.nodes.values()} == keys      # every key known, the run's own
    roar_nodes = [n for n in after.nodes.values() if n.kind == "roar"]
    assert all(len(n.deps) == 3 for n in roar_nodes)          # model, train and test maps
    shared = [n for n in roar_nodes if n.task["method"] == "random"]
    assert all(len(n.cases) == 2 for n in shared)             # random's serve its case and gradient's


def test_the_plan_estimates_from_unit_costs(local):
    out = local.before.stdout
    assert re.search(r"unit costs: .*train tinynet on tinyset \d+ img/s", out)
    assert re.search(r"estimated build time: [\d.]+(s|min|h) on cpu", out)


@pytest.fixture(scope="module")
def ray_address():
    """One real local Ray instance (2 CPUs, no dashboard) for the module's tests."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [old] if old else [str(ROOT)])
    try:    # the workers Ray starts import suite from this checkout
        ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def test_ray_builds_each_artifact_once_with_the_local_results(local, ray_address, tmp_path, cleanup):
    p = _project(tmp_path)
    sel = "tinyset and tinynet and (random or gradient or (test_roar and (crashy or broken)))"
    res = _pytest(p, "-k", sel, "--cache-dir", "cache", "--report-dir", "report",
                  "--executor", "ray", "--ray-address", ray_address)
    out = res.stdout
    assert "build task(s) submitted" in out, out[-4000:] + res.stderr[-2000:]
    cases = _cases(p, "report")
    builds = _builds(p / "cache")
    # same scores, bit for bit (CPU, fixed threads), as the local run
    for cid, c in local.cases.items():
        assert cases[cid]["score"] == c["score"] and cases[cid]["details"]["per_seed_scores"] == \
            c["details"]["per_seed_scores"], cid
        assert cases[cid]["device"] == "cpu"
    # every artifact built once, all by Ray tasks: one progress line each
    assert len({(b["kind"], b["key"]) for b in builds}) == len(builds)
    assert len(re.findall(r"^ray: built \S+ on \S+ \(pid \d+\) in [\d.]+s", out, re.M)) == len(builds)
    assert {b["pid"] for b in builds}.isdisjoint({b["pid"] for b in local.builds})
    # crashy's first attempt killed its worker: retried by Ray, built once, its cases ran
    assert (p / "markers" / "crashy-died").exists()
    assert sorted(b["name"] for b in builds if b["kind"] == "attributions" and "crashy" in b["name"]) \
        == ["tinynet-crashy-test", "tinynet-crashy-train"]
    assert cases["tinyset-tinynet-crashy/roar"]["outcome"] in ("passed", "failed", "xfailed")
    broken = cases["tinyset-tinynet-broken/roar"]
    assert broken["outcome"] == "error"
    err = broken["details"]["error"]
    assert re.search(r"remote build of attributions/tinynet-broken-(train|test) failed on "
                     r"\S+ \(pid \d+\):\nRuntimeError: broken on purpose", err), err[:600]
    assert "Traceback (most recent call last)" in err
    assert not [b for b in builds if "broken" in b["name"]]
    assert re.search(r"^ray: not built roar/tinyset-tinynet-broken-remove-pixel-t0.1-s0: it needs "
                     r"attributions/tinynet-broken-\w+, which failed", out, re.M)
    # a second run finds everything it needs in the cache and submits nothing (in this process,
    # connected to the same Ray instance)
    plan, ctx = _plan_here(p / "cache", roar_only=("crashy",))
    lines = []
    assert executor.run_on_ray(plan, ctx, progress=lines.append) == {}
    assert lines == [f"ray: nothing to build ({len(plan.nodes)} planned artifact(s), all cached)"]
    assert _builds(p / "cache") == builds
