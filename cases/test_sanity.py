"""Sanity checks (Adebayo et al. 2018): cascading and independent layer randomization, model
noise and data randomization. A method passes when its maps change (see suite.metrics.sanity);
guided backprop / guided Grad-CAM are published failures (xfail); the sobel and random controls
are calibration checks (similarity 1 and about 0 at every step)."""
from types import SimpleNamespace

import numpy as np
import pytest

from suite.metrics import sanity as S
from suite.methods import method_params


def _images(case, dataset):
    x, y, _ = dataset.split("test")
    n = S.N_IMAGES[case.scale]
    return x[:n], y[:n]


def _method_case(method, scale):  # what _kw reads of a case
    return SimpleNamespace(method=method, scale=scale)


def _kw(case, sb_context):
    return dict(seed=sb_context.seeds[0], params=method_params(case.method, case.scale),
                device=sb_context.device)


def _cached(case, trained, sb_context, record, test, x, y, build, extra=None):
    """The test's result through the artifact cache (``S.cached``): a re-run reads it."""
    result, hit = S.cached(sb_context, trained, test, case.method, x, y, build,
                           params=method_params(case.method, case.scale), seed=sb_context.seeds[0],
                           extra=extra)
    record(details={"from_cache": hit})
    return result


def _report_and_check(case, result, x, record, grid=True):
    calibration = case.method in S.CALIBRATION
    verdict = None if calibration else S.sanity_verdict(result)
    if verdict is None:
        record(score=result.similarity[S.PRIMARY][-1], higher_is_better=False,
               curves=result.curves(),
               details={**S.details(result, None), "calibration": S.CALIBRATION[case.method]})
    else:
        record(score=verdict.score, higher_is_better=False,
               baseline={"method": "trained model", "score": verdict.level},
               beats_baseline=verdict.passes, curves=result.curves(),
               details=S.details(result, verdict))
    what = f"{case.dataset} / {case.model} / {case.method}"
    if grid:
        record.figure(S.plot_grid(x, result), f"{result.test} randomization grid, {what} (rows: "
                      "test images; columns: input, trained, then each step)")
    record.figure(S.plot_curves(result, verdict), f"similarity per {result.test} step, {what}")
    if verdict is None:
        S.check_calibration(result)
        return
    assert verdict.passes, (
        f"{case.method} fails the {result.test} sanity check on {case.dataset}/{case.model}: "
        f"{verdict.measure} {verdict.score:.3f} at step {verdict.at_step!r} vs trained-model level "
        f"{verdict.level:.3f} (needs < {verdict.threshold} and < level - {verdict.margin})")


@pytest.mark.metric("sanity_cascade")
def test_sanity_cascade(case, dataset, trained, sb_context, record):
    x, y = _images(case, dataset)
    result = _cached(case, trained, sb_context, record, "cascade", x, y, lambda: (
        S.cascading_randomization(trained.model, case.model, case.method, x, y,
                                  **_kw(case, sb_context))))
    _report_and_check(case, result, x, record, grid=False)   # its maps: test_sanity_grid_cascade


@pytest.mark.metric("sanity_grid")
def test_sanity_grid_cascade(case, dataset, trained, sb_context, record):
    """The cascading-randomization picture, rows methods (Adebayo et al. Fig. 2), on the first
    GRID_IMAGES test images of the cascading cases: every method is computed per image (seeds are
    per image), so these are those cases' maps (up to the float rounding of a smaller batch)."""
    x, y = _images(case, dataset)
    x, y = x[:S.GRID_IMAGES], y[:S.GRID_IMAGES]
    methods = S.grid_methods(case.dataset, case.model, case.scale)
    if not methods:
        pytest.skip(f"no cascading case on {case.dataset}/{case.model} at scale {case.scale}")
    results = {m: S.cascading_randomization(trained.model, case.model, m, x, y, n_examples=len(x),
                                            **_kw(_method_case(m, case.scale), sb_context))
               for m in methods}
    for i in range(len(x)):
        record.figure(S.plot_method_grid(x[i], results, i),
                      f"cascading randomization, {case.dataset} / {case.model}, test image {i} (rows: "
                      "methods; columns: input, trained, then each layer re-initialised from the "
                      "logits down)")
    steps = next(iter(results.values())).steps
    record(details={"methods": methods, "steps": list(steps), "n_images": len(x)})
    for m, r in results.items():
        assert r.examples.shape == (len(steps), len(x)) + tuple(x.shape[2:]), m
        assert np.isfinite(r.examples).all() and np.abs(r.examples).max() <= 1.0, m
    if "sobel" in results:   # model-independent: its row is the same map in every column
        ex = results["sobel"].examples
        assert all(np.array_equal(ex[0], ex[k]) for k in range(len(ex))), "sobel row changes"


@pytest.mark.metric("sanity_independent")
def test_sanity_independent(case, dataset, trained, sb_context, record):
    x, y = _images(case, dataset)
    result = _cached(case, trained, sb_context, record, "independent", x, y, lambda: (
        S.independent_randomization(trained.model, case.model, case.method, x, y,
                                    **_kw(case, sb_context))))
    _report_and_check(case, result, x, record)


@pytest.mark.metric("sanity_noise")
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_sanity_noise(case, mode, dataset, trained, sb_context, record):
    """additive: the replication's cascading test, N(0, s^2) added to each layer from the top, one
    more per step (s = S.LAYER_NOISE["additive"]); multiplicative: every weight x N(1, s^2) at
    growing levels, all layers at once."""
    x, y = _images(case, dataset)
    record(details={"noise_mode": mode})
    if mode == "additive":
        s = S.LAYER_NOISE[mode]
        result = _cached(case, trained, sb_context, record, "noise_cascade", x, y, lambda: (
            S.layer_noise(trained.model, case.model, case.method, x, y, s=s, mode=mode,
                          variant="cascade", **_kw(case, sb_context))), extra={"mode": mode, "s": s})
    else:
        result = _cached(case, trained, sb_context, record, "noise", x, y, lambda: (
            S.model_noise(trained.model, case.model, case.method, x, y, **_kw(case, sb_context))))
        # the test itself: the smallest level barely changes predictions and maps
        assert result.agreement[1] >= 0.95, f"s={result.params['levels'][0]} changed " \
                                            f"predictions: agreement {result.agreement[1]:.3f}"
        if case.method != "random":
            sim0 = result.similarity[S.PRIMARY]
            assert sim0[1] >= sim0[0] - 0.05, (
                f"s={result.params['levels'][0]} changed the maps: {S.PRIMARY} {sim0[1]:.3f} vs "
                f"trained level {sim0[0]:.3f}")
    _report_and_check(case, result, x, record)


@pytest.mark.metric("sanity_datarand")
def test_sanity_datarand(case, dataset, trained, sb_context, record):
    from suite.artifacts import trained_model

    permuted = trained_model(sb_context, dataset, case.model, sb_context.seeds[0], labels="permuted")
    record(details={"permuted_train_acc": permuted.train_acc,
                    "permuted_from_cache": permuted.from_cache})
    if permuted.train_acc < S.MIN_PERMUTED_TRAIN_ACC:
        pytest.skip(f"the permuted-label model reached only {permuted.train_acc:.3f} training "
                    f"accuracy (< {S.MIN_PERMUTED_TRAIN_ACC}): it did not memorise, so comparing "
                    "its maps would not test data dependence")
    x, y = _images(case, dataset)
    result = _cached(case, trained, sb_context, record, "datarand", x, y, lambda: (
        S.data_randomization(trained.model, permuted.model, case.model, case.method, x, y,
                             **_kw(case, sb_context))), extra={"permuted": permuted.key})
    _report_and_check(case, result, x, record)
