"""The pytest plugin end to end, as a user runs it: pytester in a temporary project.

Each run is a subprocess (the plugin is already loaded in this session), with its own cache and
report folders, on the cheapest real case (digits x mlp at smoke scale).
"""
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["suite.plugin"]\n')
    (pytester.path / "cases").mkdir()
    shutil.copy(ROOT / "cases" / "test_accuracy.py", pytester.path / "cases" / "test_accuracy.py")
    return pytester


def run(p: pytest.Pytester, *args: str):
    return p.runpytest_subprocess("cases", "-p", "no:cacheprovider", "--cache-dir", str(p.path / "cache"),
                                  "--data-root", str(p.path / "nodata"), *args)


def results(p: pytest.Pytester) -> dict:
    return json.loads((p.path / "reports" / "latest" / "results.json").read_text())


def builds(p: pytest.Pytester, kind: str = "models") -> list[dict]:
    log = p.path / "cache" / "builds.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [b for b in map(json.loads, lines) if b["kind"] == kind]


def test_bad_scale_is_a_usage_error_before_collection(project):
    res = run(project, "--scale", "bogus")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "invalid choice: 'bogus'" in err and "'smoke', 'small', 'paper'" in err
    assert "collected" not in res.stdout.str()


@pytest.mark.parametrize("args,needle", [(["--seeds", "0,0"], "distinct"),
                                         (["--seeds", "x"], "invalid --seeds 'x'"),
                                         (["--device", "gpu"], "invalid --device 'gpu'"),
                                         (["--compare", "nope.json"], "--compare nope.json")])
def test_other_bad_options_are_usage_errors(project, args, needle):
    res = run(project, *args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert needle in res.stderr.str()


def test_absent_dataset_is_skipped_with_its_reason(project):
    res = run(project, "--scale", "smoke", "-k", "accuracy and cifar10", "-rs")
    assert res.ret == pytest.ExitCode.OK
    from suite.matrix import cases_for

    res.assert_outcomes(skipped=sum(c.dataset == "cifar10" for c in cases_for("accuracy", "smoke")))
    out = res.stdout.str()
    assert "cifar10: cifar-10-batches-py not found under" in out and "--download" in out
    data = results(project)
    assert {c["outcome"] for c in data["cases"]} == {"skipped"}
    assert "cifar10" in data["run"]["skipped_datasets"]
    assert all("not found" in c["details"]["reason"] for c in data["cases"])


def test_run_writes_the_results_contract_and_the_second_run_trains_nothing(project):
    res = run(project, "--scale", "smoke", "-k", "digits and mlp")
    assert res.ret == pytest.ExitCode.OK, res.stdout.str()
    res.assert_outcomes(passed=1)
    index = project.path / "reports" / "latest" / "index.html"
    assert f"report: {index}" in res.stdout.str()
    assert index.stat().st_size > 1000 and (index.parent / "results.csv").exists()
    data = results(project)
    assert data["schema"] == 1
    run_keys = {"started", "finished", "scale", "device", "seeds", "versions", "git"}
    assert run_keys <= set(data["run"]) and data["run"]["scale"] == "smoke"
    assert {"python", "torch", "torchvision", "captum", "numba"} <= set(data["run"]["versions"])
    (case,) = data["cases"]
    assert set(case) >= {"nodeid", "metric", "dataset", "model", "method", "outcome", "duration_s",
                         "score", "higher_is_better", "baseline", "beats_baseline", "curves", "details"}
    assert (case["metric"], case["dataset"], case["model"], case["method"]) == ("accuracy", "digits", "mlp", None)
    assert case["outcome"] == "passed" and case["score"] >= case["details"]["min_test_acc"]
    assert case["details"]["from_cache"] is False
    assert len(builds(project)) == 1

    again = run(project, "--scale", "smoke", "-k", "digits and mlp")
    again.assert_outcomes(passed=1)
    assert "0 built this run, 1 loaded from the cache" in again.stdout.str()
    assert results(project)["cases"][0]["details"]["from_cache"] is True
    assert results(project)["cases"][0]["score"] == case["score"]      # same seed, same number
    assert len(builds(project)) == 1
    assert len(list((project.path / "reports" / "history").glob("*.json"))) == 1   # old run kept


def test_parallel_workers_build_each_model_once(project):
    """Eight cases that all need digits x mlp, on two xdist workers: one build. (--dist worksteal:
    under the default the plugin's scheduler runs a scope's cases on one worker, suite.schedule;
    here both workers must race for the model.)"""
    project.makepyfile(**{"cases/test_many": '''
import pytest
pytestmark = pytest.mark.metric("accuracy")

@pytest.mark.parametrize("rep", range(8))
def test_same_model(case, trained, record, rep):
    record(score=trained.test_acc, details={"from_cache": trained.from_cache})
    assert trained.test_acc > 0.5
'''})
    res = run(project, "--scale", "smoke", "-n", "2", "--dist", "worksteal", "-v",
              "-k", "test_same_model and digits and mlp")
    assert res.ret == pytest.ExitCode.OK, res.stdout.str()
    res.assert_outcomes(passed=8)
    out = res.stdout.str()
    assert "[gw0]" in out and "[gw1]" in out, out       # both workers ran cases that need it
    assert len(builds(project)) == 1
    assert {c["score"] for c in results(project)["cases"]} == {results(project)["cases"][0]["score"]}


def test_truncated_model_artifact_is_detected_rebuilt_and_the_run_passes(project):
    run(project, "--scale", "smoke", "-k", "digits and mlp").assert_outcomes(passed=1)
    (art,) = (project.path / "cache" / "models").glob("*/artifact.pt")
    art.write_bytes(art.read_bytes()[:100])
    res = run(project, "--scale", "smoke", "-k", "digits and mlp", "-W", "always")
    res.assert_outcomes(passed=1)
    assert "does not match its checksum" in res.stdout.str()
    assert len(builds(project)) == 2
    assert results(project)["cases"][0]["details"]["from_cache"] is False


def test_compare_with_an_earlier_run_says_no_change_then_flags_a_changed_result(project):
    run(project, "--scale", "smoke", "-k", "digits and mlp").assert_outcomes(passed=1)
    first = project.path / "first.json"
    shutil.copy(project.path / "reports" / "latest" / "results.json", first)
    run(project, "--scale", "smoke", "-k", "digits and mlp", "--compare", str(first)).assert_outcomes(passed=1)
    page = (project.path / "reports" / "latest" / "index.html").read_text()
    assert "No change" in page
    # the same comparison against an earlier run whose score was different
    old = json.loads(first.read_text())
    old["cases"][0]["score"] = 0.5
    first.write_text(json.dumps(old))
    run(project, "--scale", "smoke", "-k", "digits and mlp", "--compare", str(first)).assert_outcomes(passed=1)
    page = (project.path / "reports" / "latest" / "index.html").read_text()
    assert "No change" not in page and "0.5" in page
