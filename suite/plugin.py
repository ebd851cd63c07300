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
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from suite.specs import SCALES, Case

log = logging.getLogger("saliencybench")

RECORD_KEY = "saliencybench"
CASE_KEY = "saliencybench.case"
UNAVAILABLE_KEY = "saliencybench.unavailable"
FAILURE_KEY = "saliencybench.failure"      # "verdict" or "error", set where the exception is known


@dataclass
class State:
    """The plugin's state for one run, in ``config.stash`` (pytest's junitxml pattern)."""

    run_id: str
    results: dict[str, dict] = field(default_factory=dict)     # nodeid -> case record
    started: str = field(default_factory=lambda: _now())
    t0: float = field(default_factory=time.time)
    skipped_datasets: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)            # nodeids of failures that are no verdict
    index: Path | None = None
    written: dict | None = None


_STATE = pytest.StashKey[State]()

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
    from suite.devices import parse

    try:
        return parse(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
                     "(cuda when available); under -n N, cuda puts xdist worker i on cuda:(i mod "
                     "GPUs) and a list cuda:0,cuda:1 on its (i mod length)-th entry. Default: cpu")
    g.addoption("--seeds", dest="sb_seeds", type=_seeds, default=None,
                help="a count N (seeds 0..N-1) or a list 0,3,7: the retrainings per point of "
                     "ROAR/KAR, and one base model per seed for aopc, pixelflip, insdel, "
                     "selectivity and road. Default: 1 at smoke and small scale, 5 at paper scale")
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
    g.addoption("--threads", dest="sb_threads", type=_positive_int, default=1,
                help="torch threads per process, whatever -n is: a trained model depends on the "
                     "thread count (float reduction order), so it is fixed and part of the "
                     "model's cache key; use -n for parallelism. numba's threads are split between "
                     "xdist workers. Default: 1")
    g.addoption("--set", dest="sb_set", action="append", default=None, metavar="KEY=VALUE",
                help="a protocol setting, e.g. --set aopc.n_images=1000 --set roar.fractions=0.1,0.5,0.9 "
                     "(repeatable; python -m suite.metrics lists the keys and their defaults; "
                     "suite.settings). Default: none")
    g.addoption("--allow-verdicts", dest="sb_allow_verdicts", action="store_true", default=False,
                help="exit 0 when every failure is a verdict (a method that did not beat the random "
                     "baseline, an accuracy bar not reached); errors (exceptions, crashes) still "
                     "fail the run. make bench uses it. Default: off")
    from suite import executor    # --executor, --ray-*, --plan (suite.executor, suite.plan)

    executor.addoption(g)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "metric(name): the metric a case file evaluates")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:        # the controller (or a plain run) checks every option up front
        _check_options(config)
        run_id = uuid.uuid4().hex
    else:
        run_id = workerinput.get("sb_run_id") or uuid.uuid4().hex
    if config.getoption("sb_checkpoint"):    # every process: the workers hand the weights out
        from suite import checkpoints

        try:
            checkpoints.validate(config.getoption("sb_checkpoint"))
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None
    _apply_settings(config)   # every process: each worker parses the same options
    _set_threads(config, int(workerinput.get("workercount", 1)) if workerinput else 1)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "saliencybench-xdist")
    config.stash[_STATE] = State(run_id=run_id)
    _worker_device(config)
    from suite.executor import Hooks

    config.pluginmanager.register(Hooks(config, context_from_config), "saliencybench-executor")


def _worker_device(config: pytest.Config) -> None:
    """A device per xdist worker (suite.devices): cuda -> cuda:(i mod GPUs), a list round robin."""
    from suite.devices import listed, worker_device, worker_index

    option = config.getoption("sb_device")
    if option == "cuda" or len(listed(option)) > 1:
        import torch

        wid = getattr(config, "workerinput", {}).get("workerid")
        if wid is None and (config.getoption("numprocesses", None) or 0):
            return       # the xdist controller: the workers map the option they are handed
        config.option.sb_device = worker_device(option, worker_index(wid), torch.cuda.device_count())


_SETTINGS = pytest.StashKey[tuple]()   # (parsed --set values, their undo)


def _apply_settings(config: pytest.Config) -> None:
    """``--set KEY=VALUE``: parsed (a usage error naming the allowed keys or values) and written
    into the tables the computation reads, at the run's scale (``suite.settings``)."""
    given = config.getoption("sb_set", None)
    if not given:
        return
    from suite import settings

    try:
        values = settings.parse(given)
    except settings.SettingError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[_SETTINGS] = (values, settings.apply(values, config.getoption("sb_scale")))


def pytest_unconfigure(config: pytest.Config) -> None:
    values_undo = config.stash.get(_SETTINGS, None)
    if values_undo is not None:
        values_undo[1]()        # in-process runs (pytester) leave the tables as they found them


def run_settings(config: pytest.Config) -> dict:
    """The run's ``--set`` values (JSON-safe), for results.json's run metadata."""
    from suite.settings import jsonable

    values_undo = config.stash.get(_SETTINGS, None)
    return jsonable(values_undo[0]) if values_undo is not None else {}


def _check_options(config: pytest.Config) -> None:
    """Every option problem is a usage error before collection, never a crash after the run."""
    compare = config.getoption("sb_compare")
    if compare:
        from suite.report.compare import load_results

        try:
            load_results(compare)
        except (OSError, ValueError) as err:
            raise pytest.UsageError(f"--compare {compare}: {err}") from None
    device = config.getoption("sb_device")
    from suite import executor

    executor.check_options(config)
    if "," in device:
        import torch

        from suite.devices import worker_device

        try:
            worker_device(device, 0, torch.cuda.device_count() if torch.cuda.is_available() else 0)
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None
    elif device != "cpu":
        import torch

        if device == "auto":
            config.option.sb_device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise pytest.UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
            index = int(device.split(":")[1]) if ":" in device else 0
            if index >= torch.cuda.device_count():
                raise pytest.UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA "
                                        f"device(s) here (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        elif device == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise pytest.UsageError("--device mps: Apple's MPS backend is not available here; "
                                        "use --device cpu")
    folder = config.getoption("sb_image_folder")
    if folder and not Path(folder).expanduser().is_dir():
        raise pytest.UsageError(f"--image-folder {folder}: not a directory")
    _check_writable_dir("--report-dir", report_dir(config))
    _check_writable_dir("--cache-dir", cache_dir(config))


def _check_writable_dir(option: str, path: Path) -> None:
    """Create ``path`` if needed and prove that a file can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise pytest.UsageError(f"{option} {path}: not a writable directory "
                                f"({err.strerror or err})") from None


def _set_threads(config: pytest.Config, workers: int) -> None:
    """torch: the fixed --threads in every process (results must not depend on -n); numba: the
    cores split between the xdist workers (its kernels write disjoint slices, so its thread
    count changes no result, only the contention between workers)."""
    import torch

    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS,
                                     (os.cpu_count() or 1) // max(1, workers))))
    # after numba's: its OpenMP layer shares libgomp with torch, and starting it (the first
    # set_num_threads) resets torch's count too (training also sets it at the point of use:
    # suite.training.torch_threads)
    torch.set_num_threads(config.getoption("sb_threads"))


class _XdistHooks:
    """Registered only when pytest-xdist is loaded: hands the run's id to every worker; under
    ``-n`` with the default ``--dist load``, schedules the cases by scope, heaviest first
    (``suite.schedule``)."""

    def pytest_configure_node(self, node) -> None:
        from suite.schedule import WORKER_FLAG

        node.workerinput["sb_run_id"] = node.config.stash[_STATE].run_id
        node.workerinput[WORKER_FLAG] = node.config.getoption("dist") == "load"

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        if config.getoption("dist") != "load":
            return None           # an explicit --dist: pytest-xdist's own scheduler
        from suite.schedule import make_scheduler

        return make_scheduler(config, log)

    @pytest.hookimpl(trylast=True)        # after -k / -m deselected what does not run
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list) -> None:
        from suite.schedule import WORKER_FLAG, order

        if getattr(config, "workerinput", {}).get(WORKER_FLAG):
            items[:] = order(items, context_from_config(config))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def cache_dir(config: pytest.Config) -> Path:
    from suite.data.base import default_cache_dir

    d = config.getoption("sb_cache_dir")
    if d is not None:
        return Path(d).expanduser()
    env = os.environ.get("SALIENCYBENCH_CACHE")
    return Path(env).expanduser() if env else Path(config.rootpath) / default_cache_dir()


def context_from_config(config: pytest.Config):
    from suite.data.base import Context, default_data_root

    scale = config.getoption("sb_scale")
    seeds = config.getoption("sb_seeds") or tuple(range(DEFAULT_SEEDS[scale]))
    state = config.stash.get(_STATE, None)
    return Context(scale=scale, device=config.getoption("sb_device"), seeds=seeds,
                   data_root=Path(config.getoption("sb_data_root") or default_data_root()),
                   download=config.getoption("sb_download"), cache_dir=cache_dir(config),
                   rebuild=config.getoption("sb_rebuild"),
                   image_folder=config.getoption("sb_image_folder"),
                   image_size=config.getoption("sb_image_size"),
                   run_id=state.run_id if state else None,
                   threads=config.getoption("sb_threads"))


def report_dir(config: pytest.Config) -> Path:
    d = config.getoption("sb_report_dir")
    return Path(d).expanduser() if d else Path(config.rootpath) / "reports" / "latest"


# -- collection -------------------------------------------------------------------------------

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    from suite.matrix import cases_for

    marker = metafunc.definition.get_closest_marker("metric")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} uses the 'case' fixture but has no "
                                "@pytest.mark.metric('<name>') marker")
    cases = cases_for(marker.args[0], metafunc.config.getoption("sb_scale"))
    metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in cases])


def _marks(case: Case) -> list:
    """A published expected failure (suite.metrics.expectations) is an xfail, never a deletion;
    a metric's own reason to skip a case (``MetricSpec.skip``) is a skip mark, decided at
    collection, so no fixture builds anything for it."""
    from suite.metrics.expectations import expectation_for
    from suite.registry import METRICS

    skip = METRICS[case.metric].skip
    reason = skip(case) if skip is not None else None
    if reason:
        return [pytest.mark.skip(reason=reason)]
    e = expectation_for(case)
    return [pytest.mark.xfail(reason=f"expected: {e.reason} ({e.source})", strict=False,
                              raises=AssertionError)] if e else []


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
    from suite.matrix import load_builtins

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
    """The case's model trained on its dataset with the first seed (from the cache when built); the
    metrics of ``suite.seeds.BASE_SEED_METRICS`` fetch the other seeds' base models themselves
    (``suite.seeds.base_models``)."""
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

    def __init__(self, item: pytest.Item, out_dir: Path, pictures: Path | None = None):
        self._item = item
        self._out = out_dir
        self._pictures = pictures        # the PNGs of keyed pictures (suite.contract.Picture)
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
        from suite.contract import Picture

        return self.picture(Picture(fig, title))

    def picture(self, pic) -> str:
        """Save a ``suite.contract.Picture`` into the report's assets (its path relative to the
        report). A keyed picture whose PNG the picture cache holds (``ImageCache``, the page's
        image cache) is copied from there, not drawn; otherwise it is drawn, saved, and (keyed)
        stored there. A cached entry that is not a readable PNG is drawn again."""
        assets = self._out / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self._item.nodeid)[-120:]
        n = len(self.data.get("images", []))
        rel = f"assets/{stem}-{n}.png"
        from suite.report.plots import ImageCache, is_raster, png_bytes

        def draw() -> tuple[str, bytes]:     # the kind travels in the cache entry's mime line
            fig = pic.make()
            kind = "raster" if is_raster(fig) else "plot"
            return f"image/png;kind={kind}", png_bytes(fig, dpi=80, bbox_inches="tight")

        if pic.key is None or self._pictures is None:
            mime, png = draw()
        else:
            mime, png = ImageCache(self._pictures).get(("case picture", pic.key), draw,
                                                       check=_decodes)
        kind = mime.partition(";kind=")[2] or "plot"
        (self._out / rel).write_bytes(png)
        # kind: a raster picture (images, maps) or a plot; the page embeds rasters with a
        # smaller palette (suite.report.plots.RASTER_COLORS)
        self.data.setdefault("images", []).append({"title": pic.title, "file": rel, "kind": kind})
        self._flush()
        return rel

    def _flush(self) -> None:
        props = [p for p in self._item.user_properties if p[0] != RECORD_KEY]
        props.append((RECORD_KEY, json.loads(json.dumps(self.data, default=_jsonable))))
        self._item.user_properties[:] = props


def _decodes(png: bytes) -> bool:
    """Whether ``png`` is a whole image Pillow reads (a cached picture torn or replaced is not)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        return True
    except Exception:
        return False


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
    return Recorder(request.node, report_dir(request.config),
                    cache_dir(request.config) / "case-pictures")


def hand_over(record: Recorder, result) -> None:
    """Record a ``suite.contract.CaseResult`` and assert its checks (the first failed check fails
    the case with its message: a verdict). A result with ``skip`` is recorded, then skipped."""
    from suite.contract import CaseResult

    if not isinstance(result, CaseResult):
        raise TypeError(f"judge() takes a suite.contract.CaseResult, got {type(result).__name__}")
    record(score=result.score, higher_is_better=result.higher_is_better,
           baseline=dict(result.baseline) if result.baseline is not None else None,
           beats_baseline=result.beats_baseline,
           curves=[dict(c) for c in result.curves] or None, details=result.details or None)
    for pic in result.figures:
        record.picture(pic)
    if result.skip is not None:
        pytest.skip(result.skip)
    failed = result.failed
    if failed is not None:
        raise AssertionError(failed.message)


@pytest.fixture
def judge(record: Recorder):
    """``judge(result)``: record a case's ``CaseResult`` for the report and assert its checks
    (``suite.contract``). Every file in ``cases/`` ends with it."""
    return lambda result: hand_over(record, result)


# -- the collector (controller side) ----------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Tell a verdict from an error where the exception is known (the worker, or a plain run).

    A verdict is an ``AssertionError`` raised by the case's body: the benchmark's checks (beats
    random, the oracle rule, an accuracy bar). Anything else (an exception in the case or in a
    fixture, a user method raising: ``suite.methods`` wraps those in ``MethodError``) is an error.
    """
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None:
        is_case = any(k == CASE_KEY for k, _ in item.user_properties)
        verdict = is_case and report.when == "call" and call.excinfo.errisinstance(AssertionError)
        report.user_properties.append((FAILURE_KEY, "verdict" if verdict else "error"))


_CASE_ID = re.compile(r"::test_(\w+)\[(.+)\]$")


def _case_from_nodeid(nodeid: str, scale: str) -> dict | None:
    """The case of a report that carries none (a crashed xdist worker's), from its node id."""
    m = _CASE_ID.search(nodeid)
    if m is None or not nodeid.split("::")[0].replace("\\", "/").split("/")[-1].startswith("test_"):
        return None
    from suite.registry import METRICS
    from suite.matrix import cases_for, load_builtins

    load_builtins()
    func, cid = m.groups()
    names = sorted(METRICS, key=lambda name: (name != func, -len(name)))
    for name in names:
        if func == name or func.startswith(name):
            for c in cases_for(name, scale):
                if c.id == cid:
                    return {**c.as_dict(), "expectation": None}
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or _STATE not in config.stash:
        return
    state = config.stash[_STATE]
    props = dict(report.user_properties)
    failure = props.get(FAILURE_KEY)
    if report.failed and failure is None:
        failure = "error"          # no exception on this side: a crashed worker, an internal error
    if report.failed and failure == "error":
        state.errors.append(report.nodeid)
    case = props.get(CASE_KEY)
    if case is None and report.nodeid in state.results:
        case = state.results[report.nodeid]          # e.g. a crash report after the case's setup
    if case is None and report.failed:
        case = _case_from_nodeid(report.nodeid, config.getoption("sb_scale"))
    if case is None:     # only benchmark cases go into the report
        return
    rec = state.results.setdefault(report.nodeid, {
        "nodeid": report.nodeid, "metric": case["metric"], "dataset": case["dataset"],
        "model": case["model"], "method": case["method"], "outcome": "passed", "duration_s": 0.0,
        "score": None, "higher_is_better": None, "baseline": None, "beats_baseline": None,
        "curves": [], "details": {"expectation": case["expectation"]} if case.get("expectation") else {}})
    rec["duration_s"] = round(rec["duration_s"] + report.duration, 3)
    if "saliencybench.device" in props:       # the case's process's device (suite.devices)
        rec["device"] = props["saliencybench.device"]
    if UNAVAILABLE_KEY in props:
        state.skipped_datasets[case["dataset"]] = props[UNAVAILABLE_KEY]
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
        rec["outcome"] = "failed" if failure == "verdict" else "error"
        rec["details"]["failure"] = failure
        rec["details"]["error"] = _failure_text(report)
        if failure == "error":
            rec["details"]["error_phase"] = report.when
    elif report.when == "call" and xfail is not None:
        rec["outcome"] = "xpassed"
        rec["details"]["reason"] = xfail


def _failure_text(report: pytest.TestReport, limit: int = 4000) -> str:
    """The failure's message: the exception line and message for an exception, the crash text
    for a crashed worker (whose report carries no exception)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        return crash.message[:limit]
    return (report.longreprtext or str(report.longrepr))[-limit:]


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
    state = config.stash[_STATE]
    ctx = context_from_config(config)
    skipped = dict(sorted(state.skipped_datasets.items()))
    cases = list(state.results.values())
    meta = metadata({c["metric"] for c in cases}, {c["method"] for c in cases if c["method"]})
    from suite import families

    roles = {m: v["role"] for m, v in meta["methods"].items()}
    directions = {m: v["higher_is_better"] for m, v in meta["metrics"].items()}
    families.apply_holm(cases, roles)
    return {"schema": 1,
            "run": {"started": state.started, "finished": _now(), "scale": ctx.scale,
                    "device": ctx.device, "seeds": list(ctx.seeds), "versions": _versions(),
                    "git": _git(Path(config.rootpath)), "skipped_datasets": skipped,
                    "duration_s": round(time.time() - state.t0, 2),
                    "cache_dir": str(ctx.cache_dir), "threads": config.getoption("sb_threads"),
                    "errors": len(state.errors), "settings": run_settings(config)},
            **meta,
            "agreement": families.agreement(cases, directions),
            "ranks": families.aggregate_ranks(cases, directions),
            "cases": cases}


def metadata(metrics: set[str], methods: set[str]) -> dict[str, dict]:
    """What the report says of each metric and method of the run, from the registry (so that it
    never infers them): a metric's description, score sentence, direction and source; a method's
    description, role (``suite.roles``) and source."""
    from suite.matrix import load_builtins
    from suite.registry import METHODS, METRICS

    load_builtins()
    out: dict[str, dict] = {"metrics": {}, "methods": {}}
    for name in sorted(metrics):
        if name in METRICS:
            m = METRICS[name]
            out["metrics"][name] = {"description": m.description, "score": m.score or m.description,
                                    "higher_is_better": m.higher_is_better, "source": m.source}
    for name in sorted(methods):
        if name in METHODS:
            m = METHODS[name]
            out["methods"][name] = {"description": m.description, "role": m.role,
                                    "source": m.source}
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or _STATE not in config.stash:
        return
    state = config.stash[_STATE]
    if (config.getoption("sb_allow_verdicts") and session.exitstatus == pytest.ExitCode.TESTS_FAILED
            and not state.errors):
        session.exitstatus = pytest.ExitCode.OK     # every failure is a verdict: see --allow-verdicts
        state.written = {**(state.written or {}), "verdicts_allowed": True}
    if not state.results:
        return   # no benchmark case ran (e.g. only unit tests): leave the last report alone
    from suite.report import render
    from suite.report.compare import load_results
    from suite.report.writer import keep_history, write_assets_manifest

    out = report_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    keep_history(out)
    results = build_results(config)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    write_assets_manifest(out, results)
    compare_path = config.getoption("sb_compare")
    compare = load_results(compare_path) if compare_path else None
    # the page's drawn images are kept in the artifact cache, keyed by what they are drawn from
    state.index = render(results, out, compare=compare,
                         image_cache=cache_dir(config) / "report-images")
    state.written = {**(state.written or {}), "results": results}


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or state.written is None:
        return
    tr = terminalreporter
    if state.written.get("verdicts_allowed"):
        tr.write_line("saliencybench: the failed cases are verdicts (see the report), no errors: "
                      "exit status 0 (--allow-verdicts)")
    if state.index is None:
        return
    from suite.report import summary_lines

    results = state.written["results"]
    tr.write_sep("=", "saliencybench")
    for line in summary_lines(results):
        tr.write_line(line)
    if state.errors:
        tr.write_line(f"errors (not verdicts): {len(state.errors)} case(s) or test(s) raised or "
                      "crashed; see the report's failed list")
    cached = [c["details"].get("from_cache") for c in results["cases"] if "from_cache" in c["details"]]
    if cached:
        tr.write_line(f"trained models: {cached.count(False)} built this run, "
                      f"{cached.count(True)} loaded from the cache ({results['run']['cache_dir']})")
    tr.write_line(f"report: {state.index}")
