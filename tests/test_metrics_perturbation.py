"""Known answers for the perturbation metrics (AOPC, pixel flipping, selectivity, insertion/deletion)."""
import numpy as np
import pytest
import torch
from torch import nn

from kernels.perturbation import perturbation_steps_ref
from suite.metrics import perturbation as pt
from suite.metrics.aopc import region_perturbation
from suite.metrics.insdel import insertion_deletion
from suite.metrics.pixelflip import pixel_flipping
from suite.metrics.selectivity import selectivity


class RegionSum(nn.Module):
    """Two-class model: logit 0 = sum of the pixels inside a known region (weight w), logit 1 = 0."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        s = (x * self.mask).sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_aopc_of_a_linear_drop_is_exactly_one_half():
    # f(x^(k)) = 1 - k/L: AOPC = 1/(L+1) * sum_{k=0..L} k/L = 1/(L+1) * (L+1)/2 = 1/2 exactly.
    for L in (1, 4, 16, 100):
        curve = 1.0 - np.arange(L + 1)[None] / L
        assert pt.aopc(curve)[0] == pytest.approx(0.5, abs=1e-12)
    # a curve that drops to 0 at the first step: AOPC = L/(L+1) (not 1: the k=0 term is 0)
    assert pt.aopc(np.array([[1.0, 0.0, 0.0, 0.0]]))[0] == pytest.approx(3 / 4)


def test_trapezoid_vs_mean():
    x = np.linspace(0, 1, 5)
    lin = 1 - x[None]
    assert pt.trapezoid_area(lin, x)[0] == pytest.approx(0.5)
    step = np.array([[1.0, 0.0, 0.0, 0.0, 0.0]])
    # trapezoid = (sum - y0/2 - yL/2) / L = 0.5/4; mean of the points = 1/5
    assert pt.trapezoid_area(step, x)[0] == pytest.approx(0.125)
    assert step.mean() == pytest.approx(0.2)
    assert pt.abpc(step, lin)[0] == pytest.approx(pt.aopc(step)[0] - pt.aopc(lin)[0])


def test_steps_equal_the_kernel_reference():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 9, 7)).astype(np.float32)
    a = rng.normal(size=(3, 9, 7))
    a[0] = 0.0   # all ties
    fill = rng.random(x.shape).astype(np.float32)
    for order in ("morf", "lerf"):
        for mode in ("deletion", "insertion"):
            for r, g in ((1, 5), (2, 1), (3, 2)):
                ref = [v.copy() for _, v in perturbation_steps_ref(x, a, r, fill, order, mode, g)]
                got = [v.copy() for _, v in pt.steps(x, a, r, fill, order=order, mode=mode, regions_per_step=g)]
                assert len(ref) == len(got)
                for u, v in zip(ref, got):
                    np.testing.assert_array_equal(u, v)


def _region_model():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1.0     # the model looks only at the top-left 4x4 region
    return RegionSum(mask)


def test_morf_vs_lerf_on_a_region_sum_model():
    model = _region_model()
    x = np.ones((2, 1, 8, 8), np.float32)
    attr = model.mask[0, 0].numpy()[None].repeat(2, 0)            # the true relevance
    target = torch.zeros(2, dtype=torch.long)
    rp = region_perturbation(model, x, attr, target, r=4, n_steps=4, fill=0.0, score="logit")
    np.testing.assert_allclose(rp.morf[0], [16, 0, 0, 0, 0])      # the region goes first
    np.testing.assert_allclose(rp.lerf[0], [16, 16, 16, 16, 0])   # ... and last
    assert rp.aopc_morf[0] == pytest.approx(16 * 4 / 5)
    assert rp.abpc[0] == pytest.approx((16 * 3) / 5)
    flip, frac = pixel_flipping(model, x, attr, target, n_steps=4, fill=0.0, r=4)
    np.testing.assert_allclose(frac, [0, .25, .5, .75, 1])
    assert pt.trapezoid_area(flip, frac)[0] == pytest.approx(16 * 0.25 / 2)


def test_insertion_with_a_one_pixel_model():
    class OnePixel(nn.Module):
        def forward(self, x):
            v = x[:, 0, 2, 3]
            return torch.stack([10 * v, torch.zeros_like(v)], dim=1)

    x = np.zeros((1, 1, 6, 6), np.float32)
    x[0, 0, 2, 3] = 1.0
    good = np.zeros((1, 6, 6))
    good[0, 2, 3] = 1.0                          # the pixel the model looks at, first
    bad = -good                                  # ... last
    t = torch.zeros(1, dtype=torch.long)
    ins_g, del_g, fr = insertion_deletion(OnePixel(), x, good, t, n_steps=36, blur_sigma=1.0)
    ins_b, del_b, _ = insertion_deletion(OnePixel(), x, bad, t, n_steps=36, blur_sigma=1.0)
    p1 = torch.softmax(torch.tensor([10.0, 0.0]), 0)[0].item()
    assert ins_g[0, 1] == pytest.approx(p1) and del_g[0, 1] == pytest.approx(0.5)  # after 1 pixel
    assert ins_b[0, -2] < p1 and ins_b[0, -1] == pytest.approx(p1)
    assert pt.trapezoid_area(ins_g, fr)[0] > pt.trapezoid_area(ins_b, fr)[0]
    assert pt.trapezoid_area(del_g, fr)[0] < pt.trapezoid_area(del_b, fr)[0]


def test_selectivity_recomputes_the_map_every_step():
    model = _region_model()
    x = np.ones((3, 1, 8, 8), np.float32)
    calls = []

    def attribute(xt, target, removed, rows):
        calls.append(xt.clone())
        return (xt[:, 0] * model.mask[0, 0]).numpy() + 0.01 * np.random.default_rng(len(calls)).random((3, 8, 8))

    curves, frac, shots = selectivity(model, x, torch.zeros(3, dtype=torch.long), attribute, r=2, n_steps=5,
                                      baseline=0.0, keep=(0, 5))
    assert len(calls) == 5                                        # one attribution per step
    assert not torch.equal(calls[0], calls[1])                    # on the modified images
    np.testing.assert_allclose(curves[0], [16, 12, 8, 4, 0, 0])   # the 4 patches of the region first
    np.testing.assert_allclose(frac, np.arange(6) / 16)
    assert set(shots) == {0, 5} and shots[5][0, :4, :4].sum() == 0


def test_uniform_fill_is_deterministic_under_the_seed():
    x = np.zeros((4, 3, 8, 8), np.float32)
    a = pt.make_fill("uniform", x, seed=3)
    np.testing.assert_array_equal(a, pt.make_fill("uniform", x, seed=3))
    assert not np.array_equal(a, pt.make_fill("uniform", x, seed=4))
    model = _region_model().eval()
    xi = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    attr = np.random.default_rng(1).random((4, 8, 8))
    kw = dict(r=2, n_steps=6, score="logit")
    f1 = pt.make_fill("uniform", xi, seed=1)
    r1 = region_perturbation(model, xi, attr, torch.zeros(4, dtype=torch.long), fill=f1, **kw)
    r2 = region_perturbation(model, xi, attr, torch.zeros(4, dtype=torch.long), fill=pt.make_fill("uniform", xi, seed=1), **kw)
    np.testing.assert_array_equal(r1.morf, r2.morf)


def test_gaussian_blur_keeps_a_constant_image():
    x = np.full((1, 2, 10, 10), 0.3, np.float32)
    np.testing.assert_allclose(pt.gaussian_blur(x, 2.0), x, atol=1e-6)


class _RegionVsConstant(torch.nn.Module):
    """Class 0: the sum over the top-left 4x4 region; class 1: the constant 6."""

    def forward(self, x):
        s = x[:, 0, :4, :4].sum(dim=(1, 2))
        return torch.stack([s, torch.full_like(s, 6.0)], dim=1)


def test_selectivity_accuracy_curve_follows_the_predicted_class():
    model = _RegionVsConstant()
    x = np.ones((3, 1, 8, 8), np.float32)
    mask = np.zeros((8, 8), np.float32)
    mask[:4, :4] = 1.0

    def attribute(xt, target, removed, rows):
        return xt[:, 0].numpy() * mask

    target = torch.zeros(3, dtype=torch.long)
    curves, frac, shots, hits = selectivity(model, x, target, attribute, r=2, n_steps=5,
                                            baseline=0.0, with_hits=True)
    np.testing.assert_allclose(curves[0], [16, 12, 8, 4, 0, 0])
    # still class 0 while the region sum exceeds 6: 16, 12, 8 yes; 4, 0, 0 no
    np.testing.assert_array_equal(hits, np.tile([1, 1, 1, 0, 0, 0], (3, 1)))
    plain = selectivity(model, x, target, attribute, r=2, n_steps=5, baseline=0.0)
    assert len(plain) == 3 and np.array_equal(plain[0], curves)


def test_relative_aopc_known_answers():
    from suite.metrics.aopc import aopc_steps, relative_aopc

    rng = np.random.default_rng(0)
    morf = rng.random((5, 9))
    rand = rng.random((5, 9))
    # the random order against itself: exactly 0 at every step
    assert np.array_equal(relative_aopc(rand, rand), np.zeros(9))
    assert np.array_equal(relative_aopc(rand.mean(0), rand.mean(0)), np.zeros(9))
    # AOPC(L) by the definition, and its last value is the per-image AOPC's mean
    steps = aopc_steps(morf)
    for L in range(9):
        want = np.mean([(morf[i, 0] - morf[i, :L + 1]).sum() / (L + 1) for i in range(5)])
        assert steps[L] == pytest.approx(want, abs=1e-12)
    assert steps[0] == 0.0 and steps[-1] == pytest.approx(pt.aopc(morf).mean(), abs=1e-12)
    np.testing.assert_allclose(relative_aopc(morf, rand), steps - aopc_steps(rand), rtol=0, atol=0)
    np.testing.assert_allclose(aopc_steps(morf.mean(0)), steps, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="steps"):
        relative_aopc(morf, rand[:, :5])
