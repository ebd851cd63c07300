"""The pytest plugin: options, markers, case parametrization, fixtures and the report collector.

Cases hand their results to the reporter through ``request.node.user_properties`` (JSON-safe
values), which crosses from pytest-xdist workers to the controller. Only the controller writes
``results.json``, ``results.csv`` and ``index.html``, in ``pytest_sessionfinish``, and prints the
report's path in ``pytest_terminal_summary``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from suite.specs import SCALES, Case

log = logging.getLogger("saliencybench")

RECORD_KEY = "saliencybench"
CASE_KEY = "saliencybench.case"
UNAVAILABLE_KEY = "saliencybench.unavailable"
_RESULTS = pytest.StashKey[dict]()
_META = pytest.StashKey[dict]()

#: seeds per scale when --seeds is not given
DEFAULT_SEEDS = {"smoke": 1, "small": 1, "paper": 5}


# -- option parsing ---------------------------------------------------------------------------

def _seeds(value: str) -> tuple[int, ...]:
    """``N`` -> seeds 0..N-1; ``a,b,c`` -> exactly those seeds."""
    try:
        if "," in value:
            seeds = tuple(int(v) for v in value.split(",") if v.strip())
        else:
            n = int(value)
            if n < 1:
                raise ValueError
            seeds = tuple(range(n))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --seeds {value!r}: give a count N >= 1 (seeds 0..N-1) or a comma-separated "
            "list of integers such as 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"invalid --seeds {value!r}: seeds must be distinct, >= 0")
    return seeds


def _device(value: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps|auto", value):
        raise argparse.ArgumentTypeError(
            f"invalid --device {value!r}: choose cpu, cuda, cuda:N, mps or auto")
    return value


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _checkpoint(value: str):
    from suite.checkpoints import parse_option

    return parse_option(value)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("saliencybench", "saliencybench: attribution benchmark")
    g.addoption("--scale", dest="sb_scale", choices=SCALES, default="small",
                help="case sizes: smoke (seconds per case, CI), small (the default CPU bench), "
                     "paper (published protocol sizes, meant for a GPU). Default: small")
    g.addoption("--device", dest="sb_device", type=_device, default="cpu",
                help="torch device for training and attribution: cpu, cuda, cuda:N, mps or auto "
                     "(cuda when available). Default: cpu")
    g.addoption("--seeds", dest="sb_seeds", type=_seeds, default=None,
                help="retrainings per point: a count N (seeds 0..N-1) or a list 0,3,7. "
                     "Default: 1 at smoke and small scale, 5 at paper scale")
    g.addoption("--data-root", dest="sb_data_root", default=None,
                help="folder holding downloaded datasets (<root>/mnist, <root>/cifar10, ...). "
                     "Default: $SALIENCYBENCH_DATA or ~/.cache/saliencybench/data")
    g.addoption("--download", dest="sb_download", action="store_true", default=False,
                help="download datasets that are not on disk (needs internet). Default: off")
    g.addoption("--image-folder", dest="sb_image_folder", default=None,
                help="an image folder (one sub-folder per class) for the 'folder' dataset. "
                     "Default: none (folder cases are skipped)")
    g.addoption("--image-size", dest="sb_image_size", type=_positive_int, default=64,
                help="side in pixels that --image-folder images are resized to. Default: 64")
    g.addoption("--cache-dir", dest="sb_cache_dir", default=None,
                help="artifact cache (trained models, attributions). "
                     "Default: $SALIENCYBENCH_CACHE or .cache/saliencybench under the rootdir")
    g.addoption("--rebuild", dest="sb_rebuild", action="store_true", default=False,
                help="rebuild every artifact this run uses instead of loading it. Default: off")
    g.addoption("--report-dir", dest="sb_report_dir", default=None,
                help="where index.html, results.json and results.csv go. Default: reports/latest")
    g.addoption("--checkpoint", dest="sb_checkpoint", action="append", default=None,
                type=_checkpoint, metavar="MODEL=PATH",
                help="evaluate the state dict in PATH for model MODEL instead of training it "
                     "(repeatable; read with weights_only=True). Default: none")
    g.addoption("--compare", dest="sb_compare", default=None,
                help="an earlier run's results.json: the report marks what changed. Default: none")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "metric(name): the metric a case file evaluates")
    compare = config.getoption("sb_compare")
    if compare and not Path(compare).is_file():
        raise pytest.UsageError(f"--compare {compare}: no such file (give an earlier results.json)")
    device = config.getoption("sb_device")
    if device.startswith("cuda") or device == "auto":
        import torch

        if device == "auto":
            config.option.sb_device = "cuda" if torch.cuda.is_available() else "cpu"
        elif not torch.cuda.is_available():
            raise pytest.UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
    from suite import checkpoints

    try:
        checkpoints.validate(config.getoption("sb_checkpoint"))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    folder = config.getoption("sb_image_folder")
    if folder and not Path(folder).expanduser().is_dir():
        raise pytest.UsageError(f"--image-folder {folder}: not a directory")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:   # share the cores between xdist workers instead of oversubscribing
        import torch

        n = int(workerinput.get("workercount", 1))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
    config.stash[_RESULTS] = {}
    config.stash[_META] = {"started": _now(), "t0": time.time(), "skipped_datasets": {}}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def context_from_config(config: pytest.Config):
    from suite.data.base import Context, default_cache_dir, default_data_root

    scale = config.getoption("sb_scale")
    seeds = config.getoption("sb_seeds") or tuple(range(DEFAULT_SEEDS[scale]))
    cache_dir = config.getoption("sb_cache_dir")
    if cache_dir is None:
        env = os.environ.get("SALIENCYBENCH_CACHE")
        cache_dir = Path(env).expanduser() if env else Path(config.rootpath) / default_cache_dir()
    return Context(scale=scale, device=config.getoption("sb_device"), seeds=seeds,
                   data_root=Path(config.getoption("sb_data_root") or default_data_root()),
                   download=config.getoption("sb_download"), cache_dir=Path(cache_dir),
                   rebuild=config.getoption("sb_rebuild"),
                   image_folder=config.getoption("sb_image_folder"),
                   image_size=config.getoption("sb_image_size"))


def report_dir(config: pytest.Config) -> Path:
    d = config.getoption("sb_report_dir")
    return Path(d) if d else Path(config.rootpath) / "reports" / "latest"


# -- collection -------------------------------------------------------------------------------

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    from suite.registry import cases_for

    marker = metafunc.definition.get_closest_marker("metric")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} uses the 'case' fixture but has no "
                                "@pytest.mark.metric('<name>') marker")
    cases = cases_for(marker.args[0], metafunc.config.getoption("sb_scale"))
    metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in cases])


def _marks(case: Case) -> list:
    """A published expected failure (suite.metrics.expectations) is an xfail, never a deletion."""
    from suite.metrics.expectations import expectation_for

    e = expectation_for(case)
    return [pytest.mark.xfail(reason=f"expected: {e.reason} ({e.source})", strict=False)] if e else []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if isinstance(case, Case):
            from suite.metrics.expectations import expectation_for

            e = expectation_for(case)
            item.user_properties.append((CASE_KEY, {**case.as_dict(),
                                                    "expectation": e.as_dict() if e else None}))


def pytest_collection_finish(session: pytest.Session) -> None:
    from suite import checkpoints

    if checkpoints.CHECKPOINTS:   # a checkpoint that does not fit: an error before any case runs
        try:
            checkpoints.check_architectures(session.items, context_from_config(session.config))
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sb_context(pytestconfig: pytest.Config):
    """The run's ``suite.data.Context`` (scale, device, seeds, data root, artifact cache)."""
    from suite.registry import load_builtins

    load_builtins()
    return context_from_config(pytestconfig)


@pytest.fixture
def dataset(case: Case, sb_context, request: pytest.FixtureRequest):
    """The case's dataset, or a skip that says where it was looked for and how to get it."""
    from suite.checkpoints import load_for
    from suite.data import DatasetUnavailable
    from suite.models.pretrained import WeightsUnavailable

    try:
        return load_for(case.dataset, case.model, sb_context)   # load(), or a pretrained model's view
    except DatasetUnavailable as err:
        request.node.user_properties.append((UNAVAILABLE_KEY, str(err)))
        pytest.skip(str(err))
    except WeightsUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def trained(case: Case, dataset, sb_context):
    """The case's model trained on its dataset with the first seed (from the cache when built)."""
    from suite.artifacts import trained_model
    from suite.checkpoints import given_model, is_given
    from suite.training import recipe

    if is_given(case.model):   # pretrained weights or --checkpoint: loaded, nothing trained
        return given_model(sb_context, dataset, case.model)
    reason = recipe(case.dataset, case.model, sb_context.scale).unsupported
    if reason:
        pytest.skip(f"{case.dataset} x {case.model}: {reason}")
    return trained_model(sb_context, dataset, case.model, sb_context.seeds[0])


class Recorder:
    """``record(score=..., curves=[...], ...)`` hands a case's result to the report."""

    def __init__(self, item: pytest.Item, out_dir: Path):
        self._item = item
        self._out = out_dir
        self.data: dict[str, Any] = {}

    def __call__(self, *, score: float | None = None, higher_is_better: bool | None = None,
                 baseline: dict | None = None, beats_baseline: bool | None = None,
                 curves: list[dict] | None = None, details: dict | None = None) -> None:
        new = {"score": score, "higher_is_better": higher_is_better, "baseline": baseline,
               "beats_baseline": beats_baseline, "curves": curves, "details": details}
        for k, v in new.items():
            if v is None:
                continue
            if k == "details":
                self.data.setdefault("details", {}).update(v)
            else:
                self.data[k] = v
        self._flush()

    def figure(self, fig, title: str) -> str:
        """Save a matplotlib Figure into the report's assets; returns its path relative to the report."""
        assets = self._out / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self._item.nodeid)[-120:]
        n = len(self.data.get("images", []))
        rel = f"assets/{stem}-{n}.png"
        from suite.report.plots import png_bytes

        (self._out / rel).write_bytes(png_bytes(fig, dpi=80, bbox_inches="tight"))
        self.data.setdefault("images", []).append({"title": title, "file": rel})
        self._flush()
        return rel

    def _flush(self) -> None:
        props = [p for p in self._item.user_properties if p[0] != RECORD_KEY]
        props.append((RECORD_KEY, json.loads(json.dumps(self.data, default=_jsonable))))
        self._item.user_properties[:] = props


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot record {type(obj).__name__} in results.json")


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Recorder:
    """Hand the case's score, curves and details to the report (see ``Recorder``)."""
    return Recorder(request.node, report_dir(request.config))


# -- the collector (controller side) ----------------------------------------------------------

def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None:
        return
    results = config.stash[_RESULTS]
    props = dict(report.user_properties)
    case = props.get(CASE_KEY)
    if case is None:     # only benchmark cases go into the report
        return
    rec = results.setdefault(report.nodeid, {
        "nodeid": report.nodeid, "metric": case["metric"], "dataset": case["dataset"],
        "model": case["model"], "method": case["method"], "outcome": "passed", "duration_s": 0.0,
        "score": None, "higher_is_better": None, "baseline": None, "beats_baseline": None,
        "curves": [], "details": {"expectation": case["expectation"]} if case.get("expectation") else {}})
    rec["duration_s"] = round(rec["duration_s"] + report.duration, 3)
    if UNAVAILABLE_KEY in props:
        config.stash[_META]["skipped_datasets"][case["dataset"]] = props[UNAVAILABLE_KEY]
    data = props.get(RECORD_KEY)
    if data:
        details = {**rec["details"], **data.get("details", {})}
        rec.update({k: v for k, v in data.items() if k != "details"})
        rec["details"] = details
    xfail = getattr(report, "wasxfail", None)
    if report.skipped:
        if xfail is not None:
            rec["outcome"] = "xfailed"
            rec["details"]["reason"] = xfail
        else:
            rec["outcome"] = "skipped"
            lr = report.longrepr
            reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
            rec["details"]["reason"] = reason.removeprefix("Skipped: ")
    elif report.failed:
        rec["outcome"] = "failed"
        msg = getattr(report.longrepr, "reprcrash", None)
        rec["details"]["error"] = (msg.message if msg else str(report.longrepr))[:2000]
    elif report.when == "call" and xfail is not None:
        rec["outcome"] = "xpassed"
        rec["details"]["reason"] = xfail


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for mod in ("torch", "torchvision", "captum", "numba", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def _git(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_results(config: pytest.Config) -> dict:
    meta = config.stash[_META]
    ctx = context_from_config(config)
    skipped = dict(sorted(meta["skipped_datasets"].items()))
    cases = list(config.stash[_RESULTS].values())
    return {"schema": 1,
            "run": {"started": meta["started"], "finished": _now(), "scale": ctx.scale,
                    "device": ctx.device, "seeds": list(ctx.seeds), "versions": _versions(),
                    "git": _git(Path(config.rootpath)), "skipped_datasets": skipped,
                    "duration_s": round(time.time() - meta["t0"], 2),
                    "cache_dir": str(ctx.cache_dir)},
            "cases": cases}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or _RESULTS not in config.stash:
        return
    if not config.stash[_RESULTS]:
        return   # no benchmark case ran (e.g. only unit tests): leave the last report alone
    from suite.report import render

    out = report_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    old = out / "results.json"
    if old.exists():   # keep every earlier run's results: nothing the user computed is lost
        hist = out.parent / "history"
        hist.mkdir(exist_ok=True)
        try:
            started = json.loads(old.read_text())["run"]["started"]
        except (ValueError, KeyError):
            started = str(int(old.stat().st_mtime))
        shutil.copy2(old, hist / (re.sub(r"[^0-9A-Za-z]+", "-", started) + ".json"))
    results = build_results(config)
    referenced = {img["file"] for c in results["cases"] for img in c.get("images", [])}
    assets = out / "assets"
    if assets.is_dir():   # drop pictures of earlier runs that this report no longer shows
        for f in assets.iterdir():
            if f"assets/{f.name}" not in referenced:
                f.unlink()
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    compare_path = config.getoption("sb_compare")
    compare = json.loads(Path(compare_path).read_text()) if compare_path else None
    index = render(results, out, compare=compare)
    config.stash[_META]["index"] = index
    config.stash[_META]["results"] = results


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    meta = config.stash.get(_META, {})
    index = meta.get("index")
    if index is None:
        return
    from suite.report import summary_lines

    results = meta["results"]
    tr = terminalreporter
    tr.write_sep("=", "saliencybench")
    for line in summary_lines(results):
        tr.write_line(line)
    cached = [c["details"].get("from_cache") for c in results["cases"] if "from_cache" in c["details"]]
    if cached:
        tr.write_line(f"trained models: {cached.count(False)} built this run, "
                      f"{cached.count(True)} loaded from the cache ({results['run']['cache_dir']})")
    tr.write_line(f"report: {index}")
