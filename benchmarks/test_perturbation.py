"""Region perturbation (AOPC), pixel flipping and selectivity vs their forward passes and Quantus.

64 shapes images (3x32x32; 8 in quick mode), an untrained SimpleCNN (speed does not depend on the
weights), gradient maps pooled by abs-sum, 16 steps. One group per metric:

* suite: the metric; floor "forward": the (steps + 1) forward passes the same number of steps
  needs (selectivity: plus its ``steps`` gradient passes, since it recomputes the map every step).
  Target: suite/forward <= 1.15.
* peer "quantus" (optional: ``pip install -e '.[bench]'``): RegionPerturbation, PixelFlipping and
  Selectivity at equal steps on the same model, images and maps. Target: quantus/suite >= 1.3.
  Quantus's Selectivity does not recompute the map, ours does: that row compares unequal work in
  Quantus's favour.

Each suite curve is checked against a plain reference computation (the kernel's numpy reference
of the perturbation steps, or a plain selectivity loop, and a forward per step).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from kernels.perturbation import perturbation_steps_ref, top_region
from suite.data.shapes import generate
from suite.methods import aggregate, explain
from suite.metrics import perturbation as pt
from suite.metrics.aopc import region_perturbation
from suite.metrics.pixelflip import pixel_flipping
from suite.metrics.selectivity import selectivity

QUANTUS = "Quantus is an optional peer, not installed (pip install -e '.[bench]')"
R, STEPS = 8, 16          # 16 patches of 8x8 = 16 steps on 32x32


@pytest.fixture(scope="module")
def setup(quick):
    from suite.models import build_model

    x_np, _, _ = generate(8 if quick else 64, 32, seed=0)
    x_np = np.ascontiguousarray(x_np, dtype=np.float32)
    x = torch.from_numpy(x_np)
    model = build_model("simplecnn", 5, (3, 32, 32), seed=0).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        y = model(x).argmax(1)
    attr = aggregate(explain("gradient", model, x, y), "abs_sum").numpy()      # (N, 1, H, W)
    fill = pt.make_fill("uniform", x_np, seed=0)
    return model, x_np, x, y, attr, fill


def forwards(model, x_np, k):
    with torch.inference_mode():
        return [model(torch.from_numpy(x_np)) for _ in range(k)]


def gradients(model, x, y, k):
    return [explain("gradient", model, x, y) for _ in range(k)]


def reference_curves(model, x_np, attr, y, r, fill, regions_per_step=1):
    """f(x^(k)) per step from the numpy reference of the perturbation steps, one forward each."""
    cols = []
    for _, xk in perturbation_steps_ref(x_np, attr[:, 0], r, fill, "morf", "deletion",
                                        regions_per_step):
        cols.append(pt.class_scores(model, torch.from_numpy(xk), y, "logit").double().numpy())
    return np.stack(cols, 1)


def _check_floor(out, model, x_np, y, k):
    assert len(out) == k
    want = pt.class_scores(model, torch.from_numpy(x_np), y, "logit")
    for logits in out:
        torch.testing.assert_close(logits.gather(1, y[:, None])[:, 0], want)


# -- region perturbation -------------------------------------------------------------------------

@pytest.mark.benchmark(group="aopc")
def test_region_perturbation_suite(speed, setup):
    model, x_np, _, y, attr, fill = setup
    res = speed(lambda: region_perturbation(model, x_np, attr, y, r=R, n_steps=STEPS, fill=fill,
                                            lerf=False), side="suite", role="suite",
                items=len(x_np))
    np.testing.assert_allclose(res.morf, reference_curves(model, x_np, attr, y, R, fill),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.benchmark(group="aopc")
def test_region_perturbation_forward_floor(speed, setup):
    model, x_np, _, y, _, _ = setup
    out = speed(lambda: forwards(model, x_np, STEPS + 1), side="forward", role="floor",
                items=len(x_np))
    _check_floor(out, model, x_np, y, STEPS + 1)


# -- pixel flipping ------------------------------------------------------------------------------

@pytest.mark.benchmark(group="pixelflip")
def test_pixel_flipping_suite(speed, setup):
    model, x_np, _, y, attr, fill = setup
    curves, _ = speed(lambda: pixel_flipping(model, x_np, attr, y, n_steps=STEPS, fill=fill, r=1),
                      side="suite", role="suite", items=len(x_np))
    g = 32 * 32 // STEPS   # 64 single pixels per step
    np.testing.assert_allclose(curves, reference_curves(model, x_np, attr, y, 1, fill, g),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.benchmark(group="pixelflip")
def test_pixel_flipping_forward_floor(speed, setup):
    model, x_np, _, y, _, _ = setup
    out = speed(lambda: forwards(model, x_np, STEPS + 1), side="forward", role="floor",
                items=len(x_np))
    _check_floor(out, model, x_np, y, STEPS + 1)


# -- selectivity ---------------------------------------------------------------------------------

def _recomputed_gradient(model):
    def attribute(xt, t, removed, rows):
        return aggregate(explain("gradient", model, xt, t), "abs_sum")[:, 0].numpy()
    return attribute


def reference_selectivity(model, x_np, y, r, n_steps, baseline=0.0):
    """The plain loop: recompute the map, remove the unremoved patch of largest relevance sum
    (first maximum; exact ties by the seeded tie order), score; per step."""
    cur = x_np.copy()
    n, c, h, w = cur.shape
    nh, nw = h // r, w // r
    removed = np.zeros((n, nh * nw), dtype=bool)
    scores = [pt.class_scores(model, torch.from_numpy(cur), y, "logit").double().numpy()]
    for _ in range(n_steps):
        a = aggregate(explain("gradient", model, torch.from_numpy(cur), y), "abs_sum")[:, 0].numpy()
        sums = a.reshape(n, nh, r, nw, r).astype(np.float64).sum((2, 4)).reshape(n, -1)
        sums[removed] = -np.inf
        for i, p in enumerate(top_region(sums)):  # first maximum, exact ties seeded (the suite's rule)
            removed[i, p] = True
            cur[i, :, (p // nw) * r:(p // nw + 1) * r, (p % nw) * r:(p % nw + 1) * r] = baseline
        scores.append(pt.class_scores(model, torch.from_numpy(cur), y, "logit").double().numpy())
    return np.stack(scores, 1)


@pytest.mark.benchmark(group="selectivity")
def test_selectivity_suite(speed, setup):
    model, x_np, _, y, _, _ = setup
    curves, _, _ = speed(lambda: selectivity(model, x_np, y, _recomputed_gradient(model), r=R,
                                             n_steps=STEPS, baseline=0.0),
                         side="suite", role="suite", items=len(x_np))
    np.testing.assert_allclose(curves, reference_selectivity(model, x_np, y, R, STEPS),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.benchmark(group="selectivity")
def test_selectivity_forward_floor(speed, setup):
    model, x_np, x, y, _, _ = setup

    def floor():
        return forwards(model, x_np, STEPS + 1), gradients(model, x, y, STEPS)

    fwd, grads = speed(floor, side="forward+gradient", role="floor", items=len(x_np))
    _check_floor(fwd, model, x_np, y, STEPS + 1)
    want = explain("gradient", model, x, y)
    for g in grads:
        torch.testing.assert_close(g, want)


# -- Quantus -------------------------------------------------------------------------------------

def _quantus_metric(quantus, which):
    common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    if which == "aopc":
        return quantus.RegionPerturbation(patch_size=R, regions_evaluation=STEPS, order="morf",
                                          perturb_baseline="uniform", **common)
    if which == "pixelflip":
        return quantus.PixelFlipping(features_in_step=32 * 32 // STEPS, perturb_baseline="uniform",
                                     **common)
    return quantus.Selectivity(patch_size=R, perturb_baseline="uniform", **common)


def _quantus_side(speed, setup, which):
    quantus = pytest.importorskip("quantus", reason=QUANTUS)
    model, x_np, _, y, attr, _ = setup
    metric = _quantus_metric(quantus, which)
    call = dict(model=model, x_batch=x_np, y_batch=y.numpy(), a_batch=attr, device="cpu",
                batch_size=len(x_np), softmax=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = speed(lambda: metric(**call), side="quantus", role="peer", items=len(x_np))
    assert len(scores) == len(x_np)


@pytest.mark.benchmark(group="aopc")
def test_region_perturbation_quantus(speed, setup):
    _quantus_side(speed, setup, "aopc")


@pytest.mark.benchmark(group="pixelflip")
def test_pixel_flipping_quantus(speed, setup):
    _quantus_side(speed, setup, "pixelflip")


@pytest.mark.benchmark(group="selectivity")
def test_selectivity_quantus(speed, setup):
    _quantus_side(speed, setup, "selectivity")
