"""Scheduling under ``pytest -n``: cases by scope (case function, dataset, model), heaviest first.

The order never changes a number (every result is keyed); these tests check the scopes, the
training weights against the FLOP formula, the order, and, end to end, that the cases of one
scope run on one xdist worker.
"""
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from suite.data.base import Context
from suite.schedule import order, scope_of, training_work
from suite.specs import Case

ROOT = Path(__file__).resolve().parents[1]


def test_scope_is_the_case_function_dataset_and_model():
    assert scope_of("cases/test_roar.py::test_roar[shapes-simplecnn-vargrad]") == \
        "cases/test_roar.py::test_roar[shapes-simplecnn"
    assert scope_of("cases/test_accuracy.py::test_accuracy[digits-mlp]") == \
        "cases/test_accuracy.py::test_accuracy[digits-mlp"
    assert scope_of("cases/t.py::test_many[digits-mlp-3]") == "cases/t.py::test_many[digits-mlp"
    assert scope_of("tests/test_x.py::test_plain") == "tests/test_x.py::test_plain"


def _item(nodeid, case=None):
    return SimpleNamespace(nodeid=nodeid, callspec=SimpleNamespace(params={"case": case}) if case else None)


@pytest.fixture
def ctx(tmp_path):
    return Context(scale="smoke", cache_dir=tmp_path / "cache", data_root=tmp_path / "nodata")


def test_training_work_is_flops_times_images_times_epochs(ctx):
    from suite.data import load
    from suite.metrics import roar
    from suite.plan import step_flops
    from suite.training import recipe

    cases = [("cases/test_accuracy.py::test_accuracy[shapes-simplecnn]",
              Case("accuracy", "shapes", "simplecnn", scale="smoke")),
             ("cases/test_roar.py::test_roar[shapes-simplecnn-oracle]",
              Case("roar", "shapes", "simplecnn", "oracle", scale="smoke")),
             ("cases/test_roar.py::test_roar[shapes-simplecnn-random]",
              Case("roar", "shapes", "simplecnn", "random", scale="smoke"))]
    work = training_work(cases, ctx)
    ds = load("shapes", ctx)
    per_image = step_flops("simplecnn", ds.num_classes, tuple(ds.in_shape))[1]
    base = recipe("shapes", "simplecnn", "smoke").train.epochs
    retrain = roar.retrain_spec("shapes", "simplecnn", "smoke").epochs
    n = len(ds.x_train)
    # the base model counts for the first case that needs it; the random control's retrainings,
    # shared by both ROAR cases, count once: the oracle's and random's ROAR retrainings and the
    # oracle check's ROAD retrainings of both (4 x fractions x seeds)
    assert work["cases/test_accuracy.py::test_accuracy[shapes-simplecnn"] == per_image * n * base
    assert work["cases/test_roar.py::test_roar[shapes-simplecnn"] == \
        per_image * n * retrain * 4 * len(roar.FRACTIONS["smoke"]) * len(ctx.seeds)
    assert len(work) == 2


def test_order_puts_the_heaviest_scope_first_and_keeps_other_tests_in_front(ctx):
    items = [_item("tests/test_a.py::test_one"),
             _item("cases/test_accuracy.py::test_accuracy[digits-mlp]",
                   Case("accuracy", "digits", "mlp", scale="smoke")),
             _item("cases/test_aopc.py::test_aopc[digits-mlp-gradient]",
                   Case("aopc", "digits", "mlp", "gradient", scale="smoke")),
             _item("cases/test_accuracy.py::test_accuracy[shapes-simplecnn]",
                   Case("accuracy", "shapes", "simplecnn", scale="smoke")),
             _item("tests/test_a.py::test_two"),
             _item("cases/test_aopc.py::test_aopc[digits-mlp-random]",
                   Case("aopc", "digits", "mlp", "random", scale="smoke")),
             _item("cases/test_roar.py::test_roar[shapes-simplecnn-oracle]",
                   Case("roar", "shapes", "simplecnn", "oracle", scale="smoke"))]
    got = [i.nodeid for i in order(items, ctx)]
    assert got == ["tests/test_a.py::test_one", "tests/test_a.py::test_two",
                   "cases/test_roar.py::test_roar[shapes-simplecnn-oracle]",          # 4 x 3 retrainings
                   "cases/test_accuracy.py::test_accuracy[shapes-simplecnn]",         # a CNN on 3 channels
                   "cases/test_accuracy.py::test_accuracy[digits-mlp]",               # an MLP
                   "cases/test_aopc.py::test_aopc[digits-mlp-gradient]",              # no training, 2 cases
                   "cases/test_aopc.py::test_aopc[digits-mlp-random]"]
    # collected the other way round the ROAR case needs the shapes model first, so its training
    # counts for the ROAR scope: still the heaviest
    assert order(list(reversed(items)), ctx)[2].nodeid == got[2]


@pytest.fixture
def project(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["suite.plugin"]\n')
    (pytester.path / "cases").mkdir()
    shutil.copy(ROOT / "cases" / "test_accuracy.py", pytester.path / "cases" / "test_accuracy.py")
    pytester.makepyfile(**{"cases/test_many": '''
import os
import pytest
pytestmark = pytest.mark.metric("accuracy")

@pytest.mark.parametrize("rep", range(6))
def test_same_model(case, trained, record, rep):
    if os.environ.get("SB_TEST_CRASH") == f"{case.model}-{rep}":
        os._exit(3)               # the worker dies mid-case
    record(score=trained.test_acc)
'''})
    return pytester


def _workers(res) -> dict[str, str]:
    """nodeid -> xdist worker, from ``-v`` lines such as ``[gw1] [ 50%] PASSED cases/...``."""
    out = {}
    for line in res.stdout.lines:
        m = re.match(r"\[(gw\d+)\] \[\s*\d+%\] (?:PASSED|FAILED|SKIPPED|ERROR)\s+(\S+)", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def run(p: pytest.Pytester, *args: str):
    # a scheduler that loses a test hangs the run: fail instead
    return p.runpytest_subprocess(
        "cases", "-p", "no:cacheprovider", "--cache-dir", str(p.path / "cache"),
        "--data-root", str(p.path / "nodata"), "--scale", "smoke", "-n", "2", "-v",
        "-k", "digits and (mlp or camcnn)", *args, timeout=600)


def test_under_n_2_a_scope_runs_on_one_worker(project):
    res = run(project)
    assert res.ret == pytest.ExitCode.OK, res.stdout.str()
    res.assert_outcomes(passed=14)
    where = _workers(res)
    assert len(where) == 14, res.stdout.str()
    for model in ("mlp", "camcnn"):
        reps = {w for nodeid, w in where.items() if f"test_same_model[digits-{model}-" in nodeid}
        assert len(reps) == 1, where                          # 6 cases of one scope, one worker
    assert set(where.values()) == {"gw0", "gw1"}, where       # both workers had scopes


def test_a_crashed_worker_loses_its_case_only(project, monkeypatch):
    """The worker dies in the second case of a scope: that case is an error, once; the rest of the
    scope runs on another worker, each case once, and the run ends."""
    monkeypatch.setenv("SB_TEST_CRASH", "camcnn-1")
    res = run(project)
    assert res.ret == pytest.ExitCode.TESTS_FAILED, res.stdout.str()
    res.assert_outcomes(passed=13, failed=1)
    out = res.stdout.str()
    assert "crashed while running" in out and "test_same_model[digits-camcnn-1]" in out
    reported = [line for line in res.stdout.lines if re.match(r"\[gw\d+\] \[", line)]
    assert len(reported) == len({line.split()[-1] for line in reported}) == 14, reported
