"""ROAD over many fractions: ``suite.metrics.road.road_curve`` vs the forward passes alone vs Quantus.

Same model (simplecnn, seeded init; its weights do not change the cost), the first 1,000 digits
images (1x16x16; 64 in quick mode), Sobel edges summed over channels as the attribution, 50
fractions (Quantus's default percentages 1, 3, ..., 99; 5 in quick mode), MoRF, noisy linear
imputation with noise 0.01, accuracy per fraction.

* group "road": the suite's curve vs "forward": the same batched forwards (softmax, argmax,
  true-class probability) on the unmodified images once per fraction, the floor any ROAD
  implementation pays. The suite's curve is checked against the reference computation (numpy
  ranking, scipy imputation per image, the same noise, a plain forward) on the first images.
* group "road-quantus" (Quantus is optional: ``pip install -e '.[bench]'``): ``quantus.ROAD`` and
  the suite on the same first 100 images.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels.imputation import impute_ref
from kernels.masking import mask_from_order_ref
from kernels.ranking import rank_order_ref
from suite.methods.controls import sobel_magnitude
from suite.metrics import road
from suite.models import build_model

QUANTUS = "Quantus is an optional peer, not installed (pip install -e '.[bench]')"


@pytest.fixture(scope="module")
def setup(quick):
    from suite.data import load
    from suite.data.base import Context

    n, n_fr = (64, 5) if quick else (1000, 50)
    ds = load("digits", Context(scale="small"))
    x = torch.cat([ds.x_test, ds.x_train])[:n].contiguous()
    y = torch.cat([ds.y_test, ds.y_train])[:n].contiguous()
    model = build_model("simplecnn", ds.num_classes, tuple(x.shape[1:]), 0).eval()
    values = sobel_magnitude(x).sum(1).numpy().astype(np.float64)
    pct = list(np.linspace(1, 99, n_fr))
    return model, x.numpy(), y, values, pct, tuple(float(q) / 100 for q in pct)


def reference_curve(model, x, y, values, fractions, noise_std=0.01):
    """ROAD MoRF accuracy per fraction the plain way: numpy ranking, the removed pixels of each
    fraction, scipy's imputation (the same noise streams as the kernel's), one forward."""
    n, c, h, w = x.shape
    order = rank_order_ref(values, "pixel")
    acc = []
    for i, t in enumerate(fractions):
        removed = mask_from_order_ref(order, t, "remove").reshape(n, h, w)
        xi = impute_ref(x, removed, noise_std, seed=i)     # road_curve's seed for (seed 0, step i)
        with torch.no_grad():
            acc.append(float((model(torch.from_numpy(xi)).argmax(1) == y).float().mean()))
    return np.array(acc)


@pytest.mark.benchmark(group="road")
def test_road_suite(speed, setup):
    model, x, y, values, _, fr = setup
    res = speed(lambda: road.road_curve(model, x, y, values, fractions=fr, order="morf"),
                side="suite", role="suite", items=len(x), rounds=3)
    k = 32
    np.testing.assert_allclose(road.road_curve(model, x[:k], y[:k], values[:k], fractions=fr)
                               .curve_mean(), reference_curve(model, x[:k], y[:k], values[:k], fr),
                               rtol=0, atol=1e-9)
    assert len(res.curve_mean()) == len(fr)


@pytest.mark.benchmark(group="road")
def test_road_forward_floor(speed, setup):
    model, x, y, _, _, fr = setup

    def forward_only():
        return [road._scores(model, x, y, "cpu", 1024) for _ in fr]

    out = speed(forward_only, side="forward", role="floor", items=len(x), rounds=3)
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    want = (int((logits.argmax(1) == y).sum()) / len(y),
            float(torch.softmax(logits, 1).gather(1, y[:, None]).mean()))
    assert len(out) == len(fr)
    for acc, prob in out:
        assert acc == pytest.approx(want[0], abs=1e-12) and prob == pytest.approx(want[1], abs=1e-6)


def _quantus_subset(setup, n=100):
    model, x, y, values, pct, fr = setup
    n = min(n, len(x))
    return model, x[:n], y[:n], values[:n], pct, fr


@pytest.mark.benchmark(group="road-quantus")
def test_road_quantus_suite_side(speed, setup):
    pytest.importorskip("quantus", reason=QUANTUS)
    model, x, y, values, _, fr = _quantus_subset(setup)
    res = speed(lambda: road.road_curve(model, x, y, values, fractions=fr), side="suite",
                role="suite", items=len(x), rounds=3)
    assert len(res.curve_mean()) == len(fr)


@pytest.mark.benchmark(group="road-quantus")
def test_road_quantus(speed, setup):
    quantus = pytest.importorskip("quantus", reason=QUANTUS)
    model, x, y, values, pct, fr = _quantus_subset(setup)
    metric = quantus.ROAD(noise=0.01, percentages=pct, display_progressbar=False,
                          disable_warnings=True, return_aggregate=False)
    a = values[:, None].astype(np.float32)
    q = speed(lambda: metric(model=model, x_batch=x, y_batch=y.numpy(), a_batch=a, device="cpu",
                             batch_size=len(x)), side="quantus", role="peer", items=len(x), rounds=1)
    qv = np.array([q[p] for p in pct]) if isinstance(q, dict) else np.asarray(q).ravel()[:len(fr)]
    ours = road.road_curve(model, x, y, values, fractions=fr).curve_mean()
    # different noise draws and tie-breaking: the curves agree to a few images
    assert np.max(np.abs(qv - ours)) <= 0.1
