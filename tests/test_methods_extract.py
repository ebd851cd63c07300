"""Whole-dataset extraction: every method at smoke scale with simplecnn on digits, the cache
(a second call recomputes nothing), batch independence, targets, progress, the plot, the CLI."""
from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

import suite.methods as M
from suite.cache import ArtifactCache
from suite.models import build_model
from suite.registry import METHODS


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread (2 spinning OpenMP threads on a busy 2-core box are
    hundreds of times slower for 16x16 convolutions)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits_train():
    """The digits training set (1x16x16); random images of that shape while suite.data is
    missing."""
    try:
        from suite.data import Context, load
    except ImportError:
        g = torch.Generator().manual_seed(0)
        return torch.rand(1437, 1, 16, 16, generator=g), torch.randint(0, 10, (1437,), generator=g)
    ds = load("digits", Context(scale="smoke"))
    return ds.x_train.contiguous(), ds.y_train


@pytest.fixture(scope="module")
def digits(digits_train):
    """The first 96 training digits with labels and a synthetic mask (digits has none; the
    oracle only needs some mask)."""
    x, y = digits_train
    x, y = x[:96].contiguous(), y[:96]
    return x, y, x > 0.5


@pytest.fixture(scope="module")
def model():
    return build_model("simplecnn", 10, (1, 16, 16), seed=0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_smoke_extraction_of_every_method(method, model, digits):
    x, y, masks = digits
    out = M.extract(model, "simplecnn", method, x, labels=y, masks=masks, batch_size=40,
                    params=M.method_params(method, "smoke"))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape in ((96, 1, 16, 16),) and np.isfinite(out).all()
    assert np.abs(out).sum() > 0


def test_extraction_does_not_depend_on_the_batch_split(model, digits):
    x, y, _ = digits
    for method in ("smoothgrad", "random", "gradient"):
        p = M.method_params(method, "smoke")
        a = M.extract(model, "simplecnn", method, x, batch_size=96, seed=3, params=p)
        b = M.extract(model, "simplecnn", method, x, batch_size=7, seed=3, params=p)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=method)


def test_targets_predicted_by_default_or_labels(model, digits):
    x, y, _ = digits
    pred = M.predict(model, x)
    by_pred = M.extract(model, "simplecnn", "gradient", x)
    by_label = M.extract(model, "simplecnn", "gradient", x, labels=y, target="label")
    ref_pred = M.explain("gradient", model, x, pred).numpy()
    ref_label = M.explain("gradient", model, x, y).numpy()
    np.testing.assert_allclose(by_pred, ref_pred, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(by_label, ref_label, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="labels"):
        M.extract(model, "simplecnn", "gradient", x, target="label")
    with pytest.raises(ValueError, match="'truth'"):
        M.extract(model, "simplecnn", "gradient", x, target="truth")
    with pytest.raises(ValueError, match="masks"):
        M.extract(model, "simplecnn", "oracle", x)
    with pytest.raises(ValueError, match="n_sample"):
        M.extract(model, "simplecnn", "smoothgrad", x, params={"n_sample": 3})


def test_extraction_restores_the_model_mode_and_reports_progress(model, digits, caplog):
    x, _, _ = digits
    model.train()
    calls = []
    with caplog.at_level(logging.INFO, logger="saliencybench"):
        M.extract(model, "simplecnn", "ixg", x, batch_size=10, progress=lambda d, n: calls.append((d, n)))
    assert model.training
    model.eval()
    assert calls == [(min(i + 10, 96), 96) for i in range(0, 96, 10)]
    lines = [r.getMessage() for r in caplog.records if "attributions ixg" in r.getMessage()]
    assert 1 <= len(lines) <= 11 and "96/96 images (100%)" in lines[-1]


def test_extract_cached_recomputes_nothing_the_second_time(model, digits, tmp_path):
    x, y, _ = digits
    cache = ArtifactCache(tmp_path)
    kw = dict(model_key="simplecnn-test-key", model=model, model_name="simplecnn", x=x,
              split="train", params=M.method_params("intgrad", "smoke"))
    a, hit = M.extract_cached(cache, method_name="intgrad", **kw)
    assert not hit and len(cache.builds()) == 1
    b, hit = M.extract_cached(cache, method_name="intgrad", **kw)
    assert hit and len(cache.builds()) == 1
    np.testing.assert_array_equal(a, b)
    # another method, split, target or parameter is another artifact ...
    M.extract_cached(cache, method_name="intgrad", **{**kw, "split": "test"})
    M.extract_cached(cache, method_name="intgrad", **{**kw, "params": {"n_steps": 4}})
    M.extract_cached(cache, method_name="intgrad", target="label", labels=y, **kw)
    assert len(cache.builds()) == 4
    # ... but aliases of the same computation share one (sens_l2 is gradient pooled with L2)
    g, hit = M.extract_cached(cache, method_name="gradient", **{**kw, "params": None})
    s, hit2 = M.extract_cached(cache, method_name="sens_l2", **{**kw, "params": None})
    assert not hit and hit2 and len(cache.builds()) == 5
    np.testing.assert_array_equal(g, s)


def test_training_set_extraction_is_cached_across_runs(model, digits_train, tmp_path):
    """A second run (a fresh cache object on the same folder, as in a new process) loads the
    maps of the whole digits training set and builds nothing."""
    x, _ = digits_train
    kw = dict(model_key="simplecnn-trained-key", model=model, model_name="simplecnn", x=x,
              split="train", method_name="gradient", batch_size=256)
    first, hit = M.extract_cached(ArtifactCache(tmp_path), **kw)
    assert not hit and first.shape == tuple(x.shape)
    second_run = ArtifactCache(tmp_path)
    again, hit = M.extract_cached(second_run, **kw)
    assert hit and len(second_run.builds()) == 1
    np.testing.assert_array_equal(first, again)


def test_plot_maps_builds_a_figure(model, digits):
    from matplotlib.figure import Figure

    x, _, masks = digits
    maps = {m: M.extract(model, "simplecnn", m, x[:3], masks=masks[:3])
            for m in ("gradient", "gradcam", "sobel")}
    fig = M.plot_maps(x[:3], maps)
    assert isinstance(fig, Figure) and len(fig.axes) == 1   # one mosaic image
    assert [t.get_text() for t in fig.axes[0].texts] == ["input", "gradient", "gradcam", "sobel"]
    # the mosaic's cell (image 1, gradcam) is that map coloured on its own range, pixel for pixel
    from suite.methods.plot import GAP, image_rgb, map_rgb, maps_mosaic

    rgb = maps_mosaic(x[:3], maps)
    h, w = x.shape[2:]
    assert rgb.shape == (3 * h + 2 * GAP, 4 * w + 3 * GAP, 3)
    cell = rgb[h + GAP:2 * h + GAP, 2 * (w + GAP):2 * (w + GAP) + w]
    np.testing.assert_array_equal(cell, map_rgb(np.asarray(maps["gradcam"])[1, 0]))
    np.testing.assert_array_equal(rgb[:h, :w], image_rgb(np.asarray(x[0])))
    assert (rgb[h:h + GAP] == 1.0).all()   # white gutter
    with pytest.raises(ValueError, match="gradcam"):
        M.plot_maps(x[:3], {"gradcam": np.zeros((3, 1, 8, 8))})


def test_cli_lists_every_method():
    out = subprocess.run([sys.executable, "-m", "suite.methods"], capture_output=True, text=True,
                         check=True).stdout
    listed = {line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith(" ")}
    assert listed == set(METHODS)
    assert "Sundararajan" in out and "layer" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_extraction_on_cuda_matches_cpu(model, digits):
    x, _, _ = digits
    for method in ("gradient", "smoothgrad", "random", "lrp_e0p01", "gradcam"):
        p = M.method_params(method, "smoke")
        cpu = M.extract(model, "simplecnn", method, x, params=p)
        gpu = M.extract(model, "simplecnn", method, x, params=p, device="cuda")
        np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-5, err_msg=method)
    assert next(model.parameters()).device.type == "cpu"


def test_mosaic_tiles_cells_with_gutters_and_enlarges_small_ones():
    from suite.methods.plot import colorize, mosaic

    big = np.zeros((4, 4, 3))
    small = np.full((2, 2, 3), 0.5)
    out = mosaic([[big, small]], gap=1)
    assert out.shape == (4, 9, 3)
    assert (out[:, 4] == 1.0).all()                      # the gutter
    np.testing.assert_array_equal(out[:, 5:], 0.5)       # 2x2 repeated to 4x4
    odd = mosaic([[big, np.zeros((3, 3, 3))]], gap=0)    # no whole factor: centred, white around
    assert (odd[:3, 4:7] == 0).all() and (odd[3, 4:] == 1.0).all() and (odd[:, 7] == 1.0).all()
    with pytest.raises(ValueError, match="every row"):
        mosaic([[big], [big, big]])
    # colorize clips like imshow: below vmin is the first colour, above vmax the last
    c = colorize(np.array([[-1.0, 0.0, 1.0, 2.0]]), "inferno", 0.0, 1.0)
    np.testing.assert_array_equal(c[0, 0], c[0, 1])
    np.testing.assert_array_equal(c[0, 2], c[0, 3])
