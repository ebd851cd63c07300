"""Regression tests of the fault classes of issue 21: nothing read from disk is trusted, cases cannot
harm each other, cached results follow the maps, bad options fail before the run, errors are not
verdicts, no user file is lost, and results do not depend on -n.

Whole runs go through pytester in a subprocess (the plugin is already loaded in this session),
each with its own cache and report folders, on cases that train nothing or the cheapest model.
"""
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import suite
from suite.cache import JSON, TORCH, ArtifactCache, CorruptArtifactWarning, meta_checksum
from suite.data.base import Context, ImageDataset
from suite.methods import MethodError, ModelModifiedError, explain
from suite.registry import RegistryError
from suite.report.writer import MANIFEST, keep_history, write_assets_manifest

ROOT = Path(__file__).resolve().parents[1]


# -- 1. meta.json is not trusted -----------------------------------------------------------------

def _meta(fetched):
    return fetched.path.parent / "meta.json"


def _fetch_model(cache, acc=0.9):
    return cache.fetch("models", "m", {"s": 1}, lambda: {"w": torch.zeros(2)}, TORCH,
                       info=lambda _: {"test_acc": acc})


@pytest.mark.parametrize("edit,needle", [
    (lambda m: m["info"].update(test_acc=0.99), "own checksum"),          # an edited figure
    (lambda m: m.update(key="0" * 20), "names key"),                      # another model's key
    (lambda m: m.update(spec={"s": 2}), "spec"),
])
def test_an_edited_meta_json_is_rebuilt_not_believed(tmp_path, edit, needle):
    cache = ArtifactCache(tmp_path)
    first = _fetch_model(cache)
    meta = json.loads(_meta(first).read_text())
    edit(meta)
    _meta(first).write_text(json.dumps(meta))
    with pytest.warns(CorruptArtifactWarning, match=needle):
        again = _fetch_model(cache)
    assert again.from_cache is False and again.key == first.key == first.path.parent.name[-20:]
    assert again.meta["info"]["test_acc"] == 0.9
    assert _fetch_model(cache).from_cache is True


@pytest.mark.parametrize("content", ["null", "[1, 2]", '"text"', "{"])
def test_a_meta_json_of_the_wrong_shape_is_rebuilt_not_a_crash(tmp_path, content):
    cache = ArtifactCache(tmp_path)
    first = _fetch_model(cache)
    _meta(first).write_text(content)
    with pytest.warns(CorruptArtifactWarning):
        assert _fetch_model(cache).from_cache is False


def test_the_meta_checksum_covers_every_field_but_itself():
    meta = {"a": 1, "info": {"test_acc": 0.5}}
    c = meta_checksum(meta)
    assert meta_checksum({**meta, "meta_sha256": "x"}) == c
    assert meta_checksum({**meta, "info": {"test_acc": 0.50001}}) != c


def test_names_that_would_leave_the_cache_folder_are_refused(tmp_path):
    cache = ArtifactCache(tmp_path)
    for bad in ("../escape", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="not allowed in a cache path"):
            cache.fetch("models", bad, {}, lambda: {}, JSON)


def test_stale_temp_files_of_killed_writes_are_removed(tmp_path):
    cache = ArtifactCache(tmp_path)
    first = cache.fetch("k", "n", {}, lambda: {"v": 1}, JSON)
    stale = first.path.parent / ".artifact.json.abc.tmp"
    stale.write_text("half")
    assert cache.fetch("k", "n", {}, lambda: {"v": 1}, JSON).from_cache is True
    assert not stale.exists()


# -- 6. a torn builds.log line ---------------------------------------------------------------------

def test_a_torn_builds_log_line_is_skipped_and_fetch_still_works(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.fetch("k", "a", {}, lambda: {"v": 1}, JSON)
    with open(tmp_path / "builds.log", "a") as f:
        f.write('{"kind": "k", "na')                        # a write killed half-way
    with pytest.warns(CorruptArtifactWarning, match="skipped 1 unreadable line"):
        assert [b["name"] for b in cache.builds()] == ["a"]
    cache.fetch("k", "b", {}, lambda: {"v": 2}, JSON)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [b["name"] for b in cache.builds()] == ["a"]   # "b" was appended to the torn line
    assert cache.fetch("k", "b", {}, lambda: {"v": 3}, JSON).value == {"v": 2}


def test_rebuild_with_a_shared_run_id_rebuilds_once_across_processes(tmp_path):
    ArtifactCache(tmp_path).fetch("k", "n", {}, lambda: {"v": 1}, JSON)
    w1 = ArtifactCache(tmp_path, rebuild=True, run_id="run-1")   # two workers of one run
    w2 = ArtifactCache(tmp_path, rebuild=True, run_id="run-1")
    assert w1.fetch("k", "n", {}, lambda: {"v": 2}, JSON).from_cache is False
    assert w2.fetch("k", "n", {}, lambda: {"v": 3}, JSON).value == {"v": 2}
    assert ArtifactCache(tmp_path, rebuild=True, run_id="run-2").fetch(
        "k", "n", {}, lambda: {"v": 4}, JSON).from_cache is False


# -- 3. cases cannot corrupt each other -----------------------------------------------------------

def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))


def test_a_method_that_writes_into_its_input_cannot_touch_the_callers_images(cleanup):
    def vandal(model, x, target):
        x.data.mul_(0)          # writes into its input (even around autograd)
        target.fill_(1)
        return torch.ones_like(x)

    suite.register_method("vandal", aggregation="abs_sum", needs_gradient=False)(vandal)
    x = torch.rand(3, 1, 4, 4)
    t = torch.zeros(3, dtype=torch.long)
    keep_x, keep_t = x.clone(), t.clone()
    out = explain("vandal", _tiny(), x, t, model_name="tiny")
    assert torch.equal(x, keep_x) and torch.equal(t, keep_t) and torch.equal(out, torch.ones_like(x))


def test_a_method_that_changes_the_weights_fails_and_the_model_is_restored(cleanup):
    def tamper(model, x, target):
        with torch.no_grad():
            model[1].weight.data.mul_(2)     # .data: no version bump; found by value
        return torch.ones_like(x)

    suite.register_method("tamper", aggregation="abs_sum", needs_gradient=False)(tamper)
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelModifiedError, match="'tamper' changed 1 of the model's 2"):
        explain("tamper", model, torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_methods_own_assertion_is_an_error_not_a_verdict(cleanup):
    def asserts(model, x, target):
        assert False, "my bug"

    suite.register_method("asserts", aggregation="abs_sum", needs_gradient=False)(asserts)
    with pytest.raises(MethodError, match="'asserts' raised AssertionError.*my bug") as err:
        explain("asserts", _tiny(), torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    assert not isinstance(err.value, AssertionError)


# -- 4. cached curves follow the maps -------------------------------------------------------------

def test_perturbation_curves_are_recomputed_when_a_methods_output_changes(cleanup, tmp_path,
                                                                         monkeypatch):
    """A method's output changes and METHODS_VERSION is bumped (as methods/base.py asks): the
    warm cache must not hand back the old curve (its key holds the version and the maps)."""
    import importlib

    extract_module = importlib.import_module("suite.methods.extract")

    from suite.artifacts import TrainedModel
    from suite.data import load
    from suite.metrics import aopc
    from suite.models import build_model
    from suite.specs import Case

    flip = {"sign": 1.0}

    def flipping(model, x, target):
        return flip["sign"] * x       # MoRF removes the brightest or the darkest pixels first

    suite.register_method("flipping", aggregation="sum", needs_gradient=False)(flipping)
    ctx = Context(scale="smoke", cache_dir=tmp_path)
    ds = load("digits", ctx)
    model = build_model("mlp", ds.num_classes, ds.in_shape, 0).eval()
    trained = TrainedModel(model, "mlp", "digits", 0, "true", "untrainedmlp", 0.0, 0.0, 0.0, True, 0.0)
    case = Case("aopc", "digits", "mlp", "flipping", "smoke")
    first = aopc.evaluate_case(case, ds, trained, ctx, n_images=8, n_steps=4)
    flip["sign"] = -1.0
    monkeypatch.setattr(extract_module, "METHODS_VERSION", extract_module.METHODS_VERSION + 1)
    second = aopc.evaluate_case(case, ds, trained, ctx, n_images=8, n_steps=4)
    a = first.details["per_seed"]["flipping"]
    b = second.details["per_seed"]["flipping"]
    assert a != b
    assert first.details["per_seed"]["random"] == second.details["per_seed"]["random"]
    monkeypatch.setattr(extract_module, "METHODS_VERSION", extract_module.METHODS_VERSION - 1)
    assert aopc.evaluate_case(case, ds, trained, ctx, n_images=8,
                              n_steps=4).details["per_seed"]["flipping"] == a     # the old entry


# -- 5. datasets named by their id, validated ---------------------------------------------------

def _ds(name="mine", n_test=4, x_fill=None):
    x = torch.rand(8, 1, 4, 4)
    if x_fill is not None:
        x[0, 0, 0, 0] = x_fill
    y = torch.arange(8) % 2
    return ImageDataset(name, x, y, torch.rand(n_test, 1, 4, 4), torch.zeros(n_test, dtype=torch.long),
                        ("a", "b"))


def test_a_dataset_whose_name_is_not_its_id_is_refused(cleanup):
    from suite.data import load

    suite.register_dataset("renamed")(lambda scale, ctx: _ds("../other"))
    with pytest.raises(ValueError, match="named '../other'; its name must be its registered id 'renamed'"):
        load("renamed", Context(scale="smoke"))


@pytest.mark.parametrize("kw,needle", [({"n_test": 0}, "the test split holds no images"),
                                       ({"x_fill": float("nan")}, "1 NaN or infinite"),
                                       ({"x_fill": float("inf")}, "1 NaN or infinite")])
def test_datasets_without_test_images_or_with_nan_pixels_are_refused(kw, needle):
    with pytest.raises(ValueError, match=needle):
        _ds(**kw)


def test_an_id_with_a_trailing_newline_is_refused(cleanup):
    with pytest.raises(RegistryError, match="is not allowed"):
        suite.register_dataset("mine\n")(lambda scale, ctx: None)


def test_a_failed_download_is_a_skip_with_its_reason(monkeypatch, tmp_path):
    import urllib.error

    import torchvision

    from suite.data import DatasetUnavailable
    from suite.data.torchvision_sets import load_cifar10

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetUnavailable, match="cifar10: .*no network"):
        load_cifar10("smoke", Context(scale="smoke", data_root=tmp_path, download=True))


# -- 7. the report folder ---------------------------------------------------------------------------

def test_the_report_writer_deletes_only_pictures_it_wrote(tmp_path):
    out = tmp_path / "report"
    assets = out / "assets"
    (assets / "sub").mkdir(parents=True)
    (assets / "mine.png").write_bytes(b"user's")
    (assets / "old.png").write_bytes(b"earlier run")
    (assets / "kept.png").write_bytes(b"earlier run")
    (assets / MANIFEST).write_text(json.dumps({"files": ["old.png", "kept.png"]}))
    results = {"cases": [{"images": [{"file": "assets/kept.png"}, {"file": "assets/new.png"}]}]}
    assert write_assets_manifest(out, results) == ["old.png"]
    assert sorted(p.name for p in assets.iterdir()) == [MANIFEST, "kept.png", "mine.png", "sub"]
    assert json.loads((assets / MANIFEST).read_text())["files"] == ["kept.png", "new.png"]


@pytest.mark.parametrize("old", ["[1, 2]", "null", "{\"run\": 5}", "not json"])
def test_an_earlier_results_json_of_any_shape_is_kept_in_history(tmp_path, old):
    out = tmp_path / "latest"
    out.mkdir()
    (out / "results.json").write_text(old)
    first, second = keep_history(out), keep_history(out)
    assert first != second and first.read_text() == second.read_text() == old


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch):
    # the runs below are not xdist workers, even when this test runs in one (make test's -n 2)
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    pytester.makeconftest('pytest_plugins = ["suite.plugin"]\n')
    (pytester.path / "cases").mkdir()
    return pytester


def run(p: pytest.Pytester, *args: str):
    # timeout: a run that hangs (a scheduler that lost a crashed worker's tests) fails the test
    return p.runpytest_subprocess("cases", "-p", "no:cacheprovider", "--cache-dir", str(p.path / "cache"),
                                  "--data-root", str(p.path / "nodata"), *args, timeout=600)


def results(p: pytest.Pytester, where: str = "reports/latest") -> dict:
    return json.loads((p.path / where / "results.json").read_text())


def test_option_problems_are_usage_errors_before_collection(project):
    (project.path / "afile").write_text("x")
    (project.path / "bad.json").write_text("{not json")
    (project.path / "list.json").write_text("[]")
    for args, needle in [(["--report-dir", "afile/sub"], "--report-dir afile/sub: not a writable"),
                         (["--cache-dir", "afile/c"], "--cache-dir afile/c: not a writable"),
                         (["--compare", "bad.json"], "--compare bad.json: not a JSON file"),
                         (["--compare", "list.json"], "not a saliencybench results.json"),
                         (["--device", "mps"], "--device mps: Apple's MPS backend is not available"),
                         (["--threads", "0"], "expected a positive integer")]:
        res = project.runpytest_subprocess("cases", "-p", "no:cacheprovider", *args)
        assert res.ret == pytest.ExitCode.USAGE_ERROR, (args, res.stderr.str())
        assert needle in res.stderr.str(), (args, res.stderr.str())
        assert "collected" not in res.stdout.str()


# -- 8. errors are not verdicts; 2. a crashed worker's case is recorded -----------------------------

CASES = '''
import os
import pytest
pytestmark = pytest.mark.metric("accuracy")

def test_accuracy(case, record):
    if case.model == "mlp":
        record(score=0.1, details={"note": "a verdict"})
        assert 0.1 > 0.5, "did not beat random: score 0.1 vs random 0.5"
    if case.model == "simplecnn":
        raise FileExistsError("infrastructure broke")
    if case.model == "resnet8":
        os._exit(3)          # the worker dies mid-case
'''


def test_errors_and_verdicts_are_told_apart_in_results_page_and_exit_status(project):
    project.makepyfile(**{"cases/test_accuracy": CASES})
    res = run(project, "--scale", "smoke", "-k", "digits and (mlp or simplecnn)", "--allow-verdicts")
    assert res.ret == pytest.ExitCode.TESTS_FAILED          # an error is never allowed
    by = {c["model"]: c for c in results(project)["cases"]}
    assert by["mlp"]["outcome"] == "failed" and by["mlp"]["details"]["failure"] == "verdict"
    assert "did not beat random" in by["mlp"]["details"]["error"]
    assert by["simplecnn"]["outcome"] == "error"
    assert "FileExistsError: infrastructure broke" in by["simplecnn"]["details"]["error"]
    page = (project.path / "reports" / "latest" / "index.html").read_text()
    assert "infrastructure broke" in page and "did not beat random: score 0.1" in page
    assert "raised an error or crashed" in page
    verdict_only = run(project, "--scale", "smoke", "-k", "digits and mlp", "--allow-verdicts")
    assert verdict_only.ret == pytest.ExitCode.OK
    assert "the failed cases are verdicts" in verdict_only.stdout.str()
    assert run(project, "--scale", "smoke", "-k", "digits and mlp").ret == pytest.ExitCode.TESTS_FAILED


def test_a_crashed_workers_case_is_in_results_as_an_error_with_the_crash_text(project):
    project.makepyfile(**{"cases/test_accuracy": CASES})
    res = run(project, "--scale", "smoke", "-n", "1", "-k", "digits and (resnet8 or mlp)")
    assert res.ret == pytest.ExitCode.TESTS_FAILED, res.stdout.str()
    by = {c["model"]: c for c in results(project)["cases"]}
    assert set(by) == {"resnet8", "mlp"}
    assert by["resnet8"]["outcome"] == "error"
    assert "crashed" in by["resnet8"]["details"]["error"]
    page = (project.path / "reports" / "latest" / "index.html").read_text()
    assert "All " not in page.split("Failed and unexpected")[0].split("verdicts")[-1]


def test_a_crash_before_any_report_is_mapped_to_its_case_by_node_id():
    from suite.plugin import _case_from_nodeid

    c = _case_from_nodeid("cases/test_roar.py::test_roar[digits-simplecnn-gradient]", "smoke")
    assert (c["metric"], c["dataset"], c["model"], c["method"]) == ("roar", "digits", "simplecnn", "gradient")
    assert _case_from_nodeid("tests/test_x.py::test_y", "smoke") is None


# -- 9, 10. results do not depend on -n; threads ----------------------------------------------------

THREADS = '''
import os
import numba
import torch

def test_threads():
    print("THREADS", torch.get_num_threads(), numba.get_num_threads())
    assert torch.get_num_threads() == 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))   # set in xdist workers
    assert numba.get_num_threads() == max(1, (os.cpu_count() or 1) // workers)
'''


@pytest.mark.parametrize("n", ["0", "2"])
def test_torch_threads_are_fixed_and_numba_threads_split_per_worker(project, n):
    project.makepyfile(**{"cases/test_threads": THREADS})
    res = run(project, "-n", n, "-k", "test_threads")
    assert res.ret == pytest.ExitCode.OK, res.stdout.str()


def test_serial_and_two_workers_train_the_same_model(project):
    """The trained model (its key and its accuracy) is the same under -n 0 and -n 2: the torch
    thread count is fixed per process, not split between workers. And --rebuild under xdist
    rebuilds a shared model once."""
    import shutil

    shutil.copy(ROOT / "cases" / "test_accuracy.py", project.path / "cases" / "test_accuracy.py")
    project.makepyfile(**{"cases/test_twice": '''
import pytest
pytestmark = pytest.mark.metric("accuracy")

@pytest.mark.parametrize("rep", range(4))
def test_same(case, trained, rep):
    assert trained.test_acc > 0.5
'''})
    out = {}
    for n in ("0", "2"):
        cache = project.path / f"cache{n}"
        res = project.runpytest_subprocess("cases", "-p", "no:cacheprovider", "--cache-dir", str(cache),
                                           "--scale", "smoke", "-n", n, "-k", "digits and mlp",
                                           "--report-dir", f"rep{n}")
        assert res.ret == pytest.ExitCode.OK, res.stdout.str()
        keys = [json.loads(line)["key"] for line in (cache / "builds.log").read_text().splitlines()]
        acc = next(c["score"] for c in results(project, f"rep{n}")["cases"] if c["metric"] == "accuracy"
                   and "test_accuracy[" in c["nodeid"])
        out[n] = (keys, acc)
    assert out["0"] == out["2"] and len(out["0"][0]) == 1
    res = project.runpytest_subprocess("cases", "-p", "no:cacheprovider", "--cache-dir",
                                       str(project.path / "cache2"), "--scale", "smoke", "-n", "2",
                                       "-k", "digits and mlp", "--rebuild", "--report-dir", "rep2")
    assert res.ret == pytest.ExitCode.OK
    assert len((project.path / "cache2" / "builds.log").read_text().splitlines()) == 2   # once more


def test_a_trainable_dataset_without_training_images_is_refused(cleanup):
    from suite.data import load

    def empty_train(scale, ctx):
        ds = _ds("notrain")
        return ImageDataset("notrain", ds.x_train[:0], ds.y_train[:0], ds.x_test, ds.y_test, ds.classes)

    suite.register_dataset("notrain")(empty_train)
    with pytest.raises(ValueError, match="'notrain': the train split holds no images"):
        load("notrain", Context(scale="smoke"))
