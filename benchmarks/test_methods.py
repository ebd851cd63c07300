"""Overhead of the suite's extraction over calling captum directly on the same batches.

gradient, intgrad, smoothgrad and gradcam on simplecnn over the digits training set (small-scale
method parameters; 128 images and smoke parameters in quick mode), batches of 128, target the
predicted class and the label: one group per (method, target).

"captum" (the floor) is what a user of captum writes for the protocol: per batch, the predicted
class (one no-grad forward) or the label, then the captum call, then the map copied into a float32
numpy array. "suite" is ``suite.methods.extract`` (eval-mode context, parameter resolution, the
NaN/shape check, per-image seeded noise for SmoothGrad). For SmoothGrad captum's ``NoiseTunnel``
is given one noise std per batch (0.15 x (max - min) of the batch; it cannot take one per image).
Budget: suite/captum <= 1.10. Both sides' maps are checked equal (SmoothGrad: with zero noise,
where both are the gradient; the timed maps differ by their noise draws).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import suite.methods as M
from suite.models import build_model, gradcam_module

METHODS = ("gradient", "intgrad", "smoothgrad", "gradcam")
TARGETS = ("predicted", "label")
BATCH = 128


@pytest.fixture(scope="module")
def setup(quick):
    from suite.data import Context, load

    ds = load("digits", Context(scale="smoke"))
    x, y = ds.x_train, ds.y_train
    if quick:
        x, y = x[:BATCH], y[:BATCH]
    model = build_model("simplecnn", 10, (1, 16, 16), seed=0).eval()
    return model, x.contiguous(), y, "smoke" if quick else "small"


def captum_direct(model, method, x, labels, params, batch_size=BATCH, noise=True):
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    model.eval()
    out = []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size].clone().requires_grad_(True)
        if labels is None:
            with torch.no_grad():
                t = model(xb).argmax(1)
        else:
            t = labels[s:s + batch_size]
        if method == "gradient":
            a = Saliency(model).attribute(xb, target=t, abs=False)
        elif method == "intgrad":
            a = IntegratedGradients(model).attribute(xb, baselines=0.0, target=t,
                                                     n_steps=params["n_steps"])
        elif method == "smoothgrad":
            std = 0.15 * float(xb.detach().max() - xb.detach().min()) if noise else 0.0
            a = NoiseTunnel(Saliency(model)).attribute(xb, nt_type="smoothgrad", target=t,
                                                       nt_samples=params["n_samples"], stdevs=std,
                                                       abs=False)
        else:
            cam = LayerGradCam(model, gradcam_module(model, "simplecnn")).attribute(
                xb, target=t, relu_attributions=True)
            a = LayerAttribution.interpolate(cam, tuple(xb.shape[2:]), interpolate_mode="bilinear")
        out.append(a.detach().to(torch.float32).numpy())
    return np.concatenate(out)


def suite_extract(model, method, x, labels, params, noise=True):
    if not noise:
        params = {**params, "noise_level": 0.0}
    return M.extract(model, "simplecnn", method, x, labels=labels,
                     target="predicted" if labels is None else "label", batch_size=BATCH,
                     params=params)


def _check_agree(model, method, x, labels, params, got, side):
    """The two sides compute the same maps (SmoothGrad without noise: the gradient)."""
    k = min(len(x), 2 * BATCH)
    lab = None if labels is None else labels[:k]
    if method == "smoothgrad":
        a = suite_extract(model, method, x[:k], lab, params, noise=False)
        b = captum_direct(model, method, x[:k], lab, params, noise=False)
        assert got.shape == (len(x), *a.shape[1:]) and np.isfinite(got).all()
    else:
        other = captum_direct if side == "suite" else suite_extract
        a, b = got[:k], other(model, method, x[:k], lab, params)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.benchmark(group="extract")
def test_extract_suite(speed, setup, method, target):
    model, x, y, scale = setup
    speed.group(f"extract-{method}-{target}")
    params = M.method_params(method, scale)
    labels = None if target == "predicted" else y
    got = speed(lambda: suite_extract(model, method, x, labels, params), side="suite",
                role="suite", items=len(x))
    _check_agree(model, method, x, labels, params, got, "suite")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.benchmark(group="extract")
def test_extract_captum_floor(speed, setup, method, target):
    model, x, y, scale = setup
    speed.group(f"extract-{method}-{target}")
    params = M.method_params(method, scale)
    labels = None if target == "predicted" else y
    got = speed(lambda: captum_direct(model, method, x, labels, params), side="captum",
                role="floor", items=len(x))
    _check_agree(model, method, x, labels, params, got, "captum")
