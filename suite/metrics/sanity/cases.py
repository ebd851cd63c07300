"""The sanity checks' cases: each ``evaluate_*`` returns the case's ``suite.contract.CaseResult``
(``cases/test_sanity.py`` hands it to the plugin's ``judge``).

A method passes when its maps change (``verdict.sanity_verdict``); guided backprop / guided
Grad-CAM are published failures (xfail rows in ``spec``); the sobel control and the random
baseline are calibration checks (``suite.roles``: similarity 1 and about 0 at every step).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from suite.contract import CaseResult, Check, Picture
from suite.methods import method_params
from suite.metrics.sanity import figures as F
from suite.metrics.sanity import randomize as R
from suite.metrics.sanity import spec as SP
from suite.metrics.sanity import verdict as V
from suite.metrics.sanity.similarity import PRIMARY


def images(case, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The case's test images and labels: the first ``N_IMAGES[scale]``."""
    x, y, _ = dataset.split("test")
    n = SP.N_IMAGES[case.scale]
    return x[:n], y[:n]


def _kw(method: str, scale: str, ctx) -> dict[str, Any]:
    return dict(seed=ctx.seeds[0], params=method_params(method, scale), device=ctx.device)


def _cached(case, trained, ctx, test: str, x, y, build: Callable[[], R.SanityResult],
            extra: dict | None = None) -> tuple[R.SanityResult, bool]:
    """The test's result through the artifact cache (``randomize.cached``): a re-run reads it."""
    return R.cached(ctx, trained, test, case.method, x, y, build,
                    params=method_params(case.method, case.scale), seed=ctx.seeds[0], extra=extra)


#: test images of the cascading grid drawn (each a methods x layers picture); the checks use all
#: SP.GRID_IMAGES. One picture per (dataset, model) keeps the page under 3 MB (issue 20).
GRID_PICTURES = 1


def conclude(case, result: R.SanityResult, x, *, grid: bool = True, details: dict | None = None,
             checks: tuple[Check, ...] = ()) -> CaseResult:
    """Score (similarity after full randomization, lower is better), verdict, curves, pictures;
    the verdict asserted, or for the controls their calibration (``suite.roles``). ``checks``
    come first (a test's own preconditions)."""
    calibration = case.method in SP.CALIBRATION
    verdict = None if calibration else V.sanity_verdict(result)
    what = f"{case.dataset} / {case.model} / {case.method}"
    figures = []
    if grid:
        figures.append(Picture.drawn(f"{result.test} randomization grid, {what} (rows: test "
                                     "images; columns: input, trained, then each step)",
                                     F.plot_grid, x, result))
    # no per-case similarity plot (F.plot_curves): the report draws the same curves (the case's
    # ``curves``) as the section's small multiples and never embedded it

    details = dict(details or {})
    if result.per_image:
        details["paired"] = paired_change(result)
    if verdict is None:
        return CaseResult(score=result.similarity[PRIMARY][-1], higher_is_better=False,
                          curves=result.curves(),
                          details={**details, **V.details(result, None),
                                   "calibration": SP.CALIBRATION[case.method]},
                          figures=figures, checks=[*checks, *V.calibration_checks(result)])
    passes = Check("sanity", verdict.passes, (
        f"{case.method} fails the {result.test} sanity check on {case.dataset}/{case.model}: "
        f"{verdict.measure} {verdict.score:.3f} at step {verdict.at_step!r} vs trained-model level "
        f"{verdict.level:.3f} (needs < {verdict.threshold} and < level - {verdict.margin})"))
    return CaseResult(score=verdict.score, higher_is_better=False,
                      baseline={"method": "trained model", "score": verdict.level},
                      beats_baseline=verdict.passes, curves=result.curves(),
                      details={**details, **V.details(result, verdict)}, figures=figures,
                      checks=[*checks, passes])


def paired_change(result: R.SanityResult) -> dict:
    """The uncertainty of a sanity verdict: per image, the similarity after randomization
    (cascade, noise, data: the last step; independent: the mean over the single-layer steps) minus
    the trained-model level (step 0), its paired BCa interval and the one-sided p that the maps
    changed (lower similarity; ``suite.stats.paired_interval``). The verdict itself stays the
    documented threshold rule (``verdict.RULE``); this states how sure it is."""
    from suite import stats

    per = np.asarray(result.per_image, dtype=np.float64)
    after = per[1:].mean(axis=0) if result.test in ("independent", "noise_independent") else per[-1]
    res = stats.paired_interval(after, per[0], higher_is_better=False)
    out = res.to_json()
    out["note"] = (f"per-image {PRIMARY} after randomization minus the trained-model level; "
                   "p: one-sided, the maps changed")
    return out


def evaluate_cascade(case, dataset, trained, ctx) -> CaseResult:
    x, y = images(case, dataset)
    result, hit = _cached(case, trained, ctx, "cascade", x, y, lambda: (
        R.cascading_randomization(trained.model, case.model, case.method, x, y,
                                  **_kw(case.method, case.scale, ctx))))
    # its maps are drawn by the grid case (evaluate_grid)
    return conclude(case, result, x, grid=False, details={"from_cache": hit})


def evaluate_grid(case, dataset, trained, ctx) -> CaseResult:
    """The cascading-randomization picture, rows methods (Adebayo et al. Fig. 2), on the first
    GRID_IMAGES test images of the cascading cases: every method is computed per image (seeds are
    per image), so these are those cases' maps (up to the float rounding of a smaller batch)."""
    x, y = images(case, dataset)
    x, y = x[:SP.GRID_IMAGES], y[:SP.GRID_IMAGES]
    methods = SP.grid_methods(case.dataset, case.model, case.scale)
    if not methods:
        return CaseResult(skip=f"no cascading case on {case.dataset}/{case.model} at scale "
                               f"{case.scale}")
    results = {m: R.cascading_randomization(trained.model, case.model, m, x, y, n_examples=len(x),
                                            **_kw(m, case.scale, ctx))
               for m in methods}
    figures = [Picture.drawn(f"cascading randomization, {case.dataset} / {case.model}, test image "
                             f"{i} (rows: methods; columns: input, trained, then each layer "
                             "re-initialised from the logits down)", F.plot_method_grid, x[i],
                             results, i) for i in range(min(len(x), GRID_PICTURES))]
    steps = next(iter(results.values())).steps
    checks = []
    for m, r in results.items():
        checks.append(Check("grid", r.examples.shape == (len(steps), len(x)) + tuple(x.shape[2:]),
                            f"{m}: example maps of shape {r.examples.shape}"))
        checks.append(Check("grid", bool(np.isfinite(r.examples).all()
                                         and np.abs(r.examples).max() <= 1.0),
                            f"{m}: example maps not finite or not normalised to [-1, 1]"))
    if "sobel" in results:   # model-independent: its row is the same map in every column
        ex = results["sobel"].examples
        checks.append(Check("grid", all(np.array_equal(ex[0], ex[k]) for k in range(len(ex))),
                            "sobel row changes"))
    return CaseResult(details={"methods": methods, "steps": list(steps), "n_images": len(x)},
                      figures=figures, checks=checks)


def evaluate_independent(case, dataset, trained, ctx) -> CaseResult:
    x, y = images(case, dataset)
    result, hit = _cached(case, trained, ctx, "independent", x, y, lambda: (
        R.independent_randomization(trained.model, case.model, case.method, x, y,
                                    **_kw(case.method, case.scale, ctx))))
    return conclude(case, result, x, details={"from_cache": hit})


def evaluate_noise(case, mode: str, dataset, trained, ctx) -> CaseResult:
    """additive: the replication's cascading test, N(0, s^2) added to each layer from the top, one
    more per step (s = LAYER_NOISE["additive"]); multiplicative: every weight x N(1, s^2) at
    growing levels, all layers at once."""
    x, y = images(case, dataset)
    checks = []
    if mode == "additive":
        s = R.LAYER_NOISE[mode]
        result, hit = _cached(case, trained, ctx, "noise_cascade", x, y, lambda: (
            R.layer_noise(trained.model, case.model, case.method, x, y, s=s, mode=mode,
                          variant="cascade", **_kw(case.method, case.scale, ctx))),
            extra={"mode": mode, "s": s})
    else:
        result, hit = _cached(case, trained, ctx, "noise", x, y, lambda: (
            R.model_noise(trained.model, case.model, case.method, x, y,
                          **_kw(case.method, case.scale, ctx))))
        # the test itself: the smallest level barely changes predictions and maps
        checks.append(Check("noise_floor", result.agreement[1] >= 0.95,
                            f"s={result.params['levels'][0]} changed predictions: agreement "
                            f"{result.agreement[1]:.3f}"))
        if case.method != "random":
            sim0 = result.similarity[PRIMARY]
            checks.append(Check("noise_floor", sim0[1] >= sim0[0] - 0.05, (
                f"s={result.params['levels'][0]} changed the maps: {PRIMARY} {sim0[1]:.3f} vs "
                f"trained level {sim0[0]:.3f}")))
    return conclude(case, result, x, details={"noise_mode": mode, "from_cache": hit},
                    checks=tuple(checks))


def evaluate_datarand(case, dataset, trained, ctx) -> CaseResult:
    from suite.artifacts import trained_model

    permuted = trained_model(ctx, dataset, case.model, ctx.seeds[0], labels="permuted")
    details = {"permuted_train_acc": permuted.train_acc, "permuted_from_cache": permuted.from_cache}
    if permuted.train_acc < SP.MIN_PERMUTED_TRAIN_ACC:
        return CaseResult(details=details, skip=(
            f"the permuted-label model reached only {permuted.train_acc:.3f} training accuracy "
            f"(< {SP.MIN_PERMUTED_TRAIN_ACC}): it did not memorise, so comparing its maps would "
            "not test data dependence"))
    x, y = images(case, dataset)
    result, hit = _cached(case, trained, ctx, "datarand", x, y, lambda: (
        R.data_randomization(trained.model, permuted.model, case.model, case.method, x, y,
                             **_kw(case.method, case.scale, ctx))), extra={"permuted": permuted.key})
    return conclude(case, result, x, details={**details, "from_cache": hit})
