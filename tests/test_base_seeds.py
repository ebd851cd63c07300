"""Base-model seeds (issue 17, item 2): ``--seeds N`` trains N base models for the non-retraining
perturbation metrics, and the verdict combines models and images (the two-way bootstrap,
``suite.stats.seeds_by_images_interval``); with one seed everything is the paired BCa verdict as
before. Also insdel's deletion verdict, now the same paired rule as its insertion verdict."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from suite import stats as S
from suite.artifacts import TrainedModel
from suite.seeds import BASE_SEED_METRICS, base_models
from suite.data.base import Context
from suite.metrics import perturbation as pt
from suite.metrics.insdel import deletion_verdict
from suite.metrics.verdict import PAIRED_RULE, paired_verdict

RNG_SEED = 17  # with the test's name, the seed of its own generator (conftest's rng)


# -- the combination rule: known answers ------------------------------------------------------

def test_one_model_by_model_is_exactly_the_paired_bca_verdict(rng):
    m, r = rng.normal(0.3, 1, (1, 50)), rng.normal(0, 1, (1, 50))
    for hib in (True, False):
        by_model = paired_verdict(m, r, higher_is_better=hib, by_model=True)
        before = paired_verdict(m, r, higher_is_better=hib)
        assert by_model == before                                 # every field, bit for bit
        ref = S.paired_interval(m[0], r[0], higher_is_better=hib)
        assert by_model.paired["p_value"] == ref.p_value and by_model.paired["ci"] == list(ref.ci)
        assert by_model.paired["n_models"] == 1 and by_model.paired["method"] == "bootstrap"


def test_two_identical_models_have_the_one_models_estimate_and_an_image_bootstrap(rng):
    n, b = 40, 500
    m, r = rng.normal(0.2, 1, n), rng.normal(0, 1, n)
    two = S.seeds_by_images_interval(np.stack([m, m]), np.stack([r, r]), higher_is_better=True,
                                     resamples=b, seed=3)
    one = S.paired_interval(m, r, higher_is_better=True)
    assert two.mean_diff == pytest.approx(one.mean_diff, abs=1e-15)
    assert (two.n, two.n_models, two.unit) == (n, 2, "images")
    # by hand: identical rows make the model draw irrelevant, so each resample is the mean of
    # the drawn images' differences (the same generator calls: models first, then images)
    draws = np.random.default_rng(3)                   # the interval's own generator (seed=3)
    draws.integers(0, 2, size=(b, 2))
    ii = draws.integers(0, n, size=(b, n))
    thetas = (m - r)[ii].mean(axis=1)
    lo, hi = np.quantile(thetas, [0.025, 0.975])
    assert two.ci == pytest.approx((lo, hi), abs=1e-12)
    assert two.p_value == pytest.approx((np.count_nonzero(thetas <= 0) + 1) / (b + 1), abs=1e-15)
    # the verdict's numbers: the score is the mean over the models, the advantage as with one
    v2 = paired_verdict(np.stack([m, m]), np.stack([r, r]), higher_is_better=True, by_model=True)
    v1 = paired_verdict(m[None], r[None], higher_is_better=True)
    assert v2.score == pytest.approx(v1.score, abs=1e-15)
    assert v2.advantage == pytest.approx(v1.advantage, abs=1e-15)
    assert v2.paired["n_models"] == 2 and v2.paired["n"] == n


def test_model_to_model_spread_widens_the_verdicts_interval(rng):
    m, r = rng.normal(0.3, 0.5, (1, 60)), rng.normal(0, 0.5, (1, 60))
    same = paired_verdict(np.concatenate([m, m, m]), np.concatenate([r, r, r]),
                          higher_is_better=True, by_model=True)
    spread = paired_verdict(np.concatenate([m, m + 0.6, m - 0.6]), np.concatenate([r, r, r]),
                            higher_is_better=True, by_model=True)
    w = lambda v: v.paired["ci"][1] - v.paired["ci"][0]  # noqa: E731
    assert spread.paired["mean_diff"] == pytest.approx(same.paired["mean_diff"])
    assert w(spread) > 2 * w(same)


def _tm(seed=0, name="simplecnn"):
    return TrainedModel(None, name, "digits", seed, "true", f"key{seed}", 1.0, 1.0, 0.0, True, 0.0)


def test_base_models_rule_without_training(tmp_path):
    t = _tm()
    one = Context(scale="smoke", seeds=(0,), cache_dir=tmp_path)
    assert base_models(one, None, t, "aopc") == [(0, t)]                # one seed: the fixture's
    two = Context(scale="smoke", seeds=(0, 1), cache_dir=tmp_path)
    for metric in ("roar", "kar", "sanity_cascade", "maps", "accuracy"):  # not base-model seeds
        assert metric not in BASE_SEED_METRICS
        assert base_models(two, None, t, metric) == [(0, t), (1, t)]
    assert set(BASE_SEED_METRICS) == {"aopc", "pixelflip", "insdel", "selectivity", "road"}


# -- insdel: the deletion verdict is the paired per-image verdict --------------------------------

def _seed_result(dele):
    return pt.SeedResult(0.0, {"del": dele, "ins": dele}, per_image=np.zeros(len(dele)))


def test_insdel_deletion_verdict_is_paired_per_image_and_lower_is_better(rng):
    fr = np.linspace(0, 1, 9)
    base = rng.random((30, 9))
    lower = base * 0.7                                 # the method's deletion curves fall faster
    raw = {"results": {"gradient": [_seed_result(lower)], "random": [_seed_result(base)]},
           "n_models": 1}
    v = deletion_verdict(raw, fr)
    ref = paired_verdict(pt.trapezoid_area(lower, fr)[None], pt.trapezoid_area(base, fr)[None],
                         higher_is_better=False)
    assert v == ref and v.rule == PAIRED_RULE and not v.higher_is_better
    assert v.beats and v.paired["unit"] == "images" and v.paired["n"] == 30
    assert v.paired["mean_diff"] == pytest.approx(
        float((pt.trapezoid_area(lower, fr) - pt.trapezoid_area(base, fr)).mean()))
    worse = deletion_verdict({"results": {"gradient": [_seed_result(base)],
                                          "random": [_seed_result(lower)]}, "n_models": 1}, fr)
    assert not worse.beats
    # two base models: the two-way bootstrap over models x images
    raw2 = {"results": {"gradient": [_seed_result(lower), _seed_result(lower * 0.9)],
                        "random": [_seed_result(base), _seed_result(base)]}, "n_models": 2}
    v2 = deletion_verdict(raw2, fr)
    assert v2.paired["n_models"] == 2 and v2.paired["n"] == 30 and v2.beats


# -- end to end: --seeds 2 trains two base models for a smoke case -----------------------------

@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch):
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    # the optimizer's first step imports torch._dynamo lazily; imported inside an in-process run
    # it would be dropped with that run's modules and registered twice by the next run
    import torch._dynamo  # noqa: F401
    cases = Path(__file__).resolve().parents[1] / "cases"
    pytester.makeconftest('pytest_plugins = ["suite.plugin"]\n')
    (pytester.path / "cases").mkdir()
    for name in ("test_aopc.py", "test_insdel.py", "test_road.py"):
        (pytester.path / "cases" / name).write_text((cases / name).read_text())
    return pytester


SEL = "digits and simplecnn and (gradient or random) and (aopc or insdel or road)"


def _run(p: pytest.Pytester, *args: str):
    # a subprocess: an in-process run drops the modules it imported (numba's lazily registered
    # types among them) and the next import registers them twice. importlib mode: under make test's xdist workers the suite's own cases are already imported
    return p.runpytest_subprocess("cases", "-p", "no:cacheprovider", "-p", "no:xdist",
                                 "--import-mode=importlib", "--scale", "smoke", "-k", SEL,
                                 "--cache-dir", str(p.path / "cache"), "--data-root",
                                 str(p.path / "nodata"), "--report-dir", str(p.path / "report"),
                                 "--allow-verdicts", *args)


def _to_build(res) -> dict[str, int]:
    line = [ln for ln in res.outlines if ln.startswith("plan: to build:")]
    assert line, "\n".join(res.outlines[-40:])
    return {k: int(v) for k, v in (kv.split("=") for kv in line[-1].split()[3:])}


def _models_built(p) -> list[str]:
    log = p.path / "cache" / "builds.log"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return [r["name"] for r in rows if r["kind"] == "models"]


def _cases(p) -> dict[str, dict]:
    out = json.loads((p.path / "report" / "results.json").read_text())
    assert out["run"]["errors"] == 0
    return {f"{c['metric']}/{c['method']}": c for c in out["cases"]}


def test_seeds_2_trains_two_base_models_and_the_verdict_combines_them(project):
    # one seed (the default): one base model, the paired BCa verdict over the images as before
    assert _to_build(_run(project, "--plan"))["models"] == 1
    assert _to_build(_run(project, "--plan", "--seeds", "2"))["models"] == 2
    _run(project)
    assert _models_built(project) == ["digits-simplecnn-s0"]
    one = _cases(project)
    assert set(one) == {f"{m}/{w}" for m in ("aopc", "insdel", "road") for w in ("gradient",
                                                                               "random")}
    for metric, hib in (("aopc", True), ("insdel", True), ("road", False)):
        c, r = one[f"{metric}/gradient"], one[f"{metric}/random"]
        assert c["details"]["n_models"] == 1 and c["details"]["paired"]["n_models"] == 1
        ref = S.paired_interval(c["details"]["per_image"], r["details"]["per_image"],
                                higher_is_better=hib)
        assert c["details"]["paired"]["p_value"] == ref.p_value
        assert c["details"]["paired"]["ci"] == list(ref.ci)
    dv = one["insdel/gradient"]["details"]["deletion_verdict"]
    assert dv["rule"] == PAIRED_RULE and dv["paired"]["unit"] == "images"
    # two seeds: the plan counts the one base model still missing, and the run builds exactly it
    assert _to_build(_run(project, "--plan", "--seeds", "2"))["models"] == 1
    _run(project, "--seeds", "2")
    built = _models_built(project)
    assert Counter(built) == Counter(["digits-simplecnn-s0", "digits-simplecnn-s1"])
    two = _cases(project)
    for metric in ("aopc", "insdel", "road"):
        d = two[f"{metric}/gradient"]["details"]
        assert d["n_models"] == 2 and len(set(d["base_models"])) == 2
        assert d["paired"]["n_models"] == 2 and "two-way bootstrap" in d["paired"]["note"]
        rd = two[f"{metric}/random"]["details"]
        # the mean difference: over every (model, image) cell = of the per-image model means
        assert d["paired"]["mean_diff"] == pytest.approx(
            np.mean(d["per_image"]) - np.mean(rd["per_image"]), abs=1e-12)
    assert two["insdel/gradient"]["details"]["deletion_verdict"]["paired"]["n_models"] == 2
    # the seed-0 model's curves are the one-seed run's (the same cache keys): its per-seed score
    assert two["aopc/gradient"]["details"]["per_seed"]["gradient"][0] == \
        one["aopc/gradient"]["details"]["per_seed"]["gradient"][0]
    assert _to_build(_run(project, "--plan", "--seeds", "2"))["models"] == 0
