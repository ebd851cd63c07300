"""kernels.perturbation: region sums/order, step generator == reference, fills."""
import numpy as np
import pytest

from kernels.perturbation import (
    perturb_regions,
    perturb_regions_ref,
    perturbation_steps,
    perturbation_steps_ref,
    region_order,
    region_order_ref,
    region_sums,
    region_sums_ref,
    top_region,
    uniform_fill,
)

RNG = np.random.default_rng(7)
SHAPES = [(7, 9, 3), (8, 8, 2), (5, 5, 1), (3, 3, 3), (1, 1, 1)]  # (H, W, r): partial borders too


@pytest.mark.parametrize("h, w, r", SHAPES)
def test_region_sums_and_order(h, w, r):
    for a in (RNG.normal(size=(3, h, w)), RNG.integers(0, 2, size=(3, 1, h, w)), np.zeros((2, h, w))):
        np.testing.assert_allclose(region_sums(a, r), region_sums_ref(a, r), rtol=0, atol=1e-12)
        morf = region_order(a, r, "morf")
        np.testing.assert_array_equal(morf, region_order_ref(a, r, "morf"))
        np.testing.assert_array_equal(region_order(a, r, "lerf"), morf[:, ::-1])
        for seed, ids in ((None, None), (4, np.arange(len(a)) + 11)):
            np.testing.assert_array_equal(region_order(a, r, "morf", tie_seed=seed, ids=ids),
                                          region_order_ref(a, r, "morf", tie_seed=seed, ids=ids))
        s = region_sums(a, r).reshape(len(a), -1)
        np.testing.assert_array_equal(top_region(s), morf[:, 0])


def test_partial_border_regions_are_summed():
    a = np.ones((1, 5, 5))
    np.testing.assert_array_equal(region_sums(a, 2)[0], [[4, 4, 2], [4, 4, 2], [2, 2, 1]])
    np.testing.assert_array_equal(region_order(np.zeros((1, 2, 2)), 1, "morf", tie_seed=None)[0],
                                  [0, 1, 2, 3])


def test_top_region_ties_and_exclusions():
    s = np.array([[1.0, 3.0, 3.0, -np.inf], [-np.inf, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(top_region(s, tie_seed=None), [1, 1])
    got = top_region(s, tie_seed=2)
    assert got[0] in (1, 2) and got[1] in (1, 2, 3)
    np.testing.assert_array_equal(got, region_order(s.reshape(2, 1, 4), 1, tie_seed=2)[:, 0])
    with pytest.raises(ValueError, match="sums contains NaN"):
        top_region(np.array([[np.nan, 1.0]]))


def test_all_tie_morf_equals_random_in_distribution():
    """An all-tie map's MoRF order is a uniformly random permutation of the regions: over 2000
    images the region removed first is uniform (chi-square, 15 df, below the 0.999 quantile)
    and no longer region 0 (index order)."""
    from scipy import stats

    o = region_order(np.zeros((2000, 8, 8)), 2, "morf")
    counts = np.bincount(o[:, 0], minlength=16)
    assert counts[0] < 2000
    chi2 = ((counts - 125.0) ** 2 / 125.0).sum()
    assert chi2 < stats.chi2.ppf(0.999, 15), counts


@pytest.mark.parametrize("h, w, r", SHAPES)
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_steps_match_reference(h, w, r, mode, order):
    x = RNG.random((3, 2, h, w)).astype(np.float32)
    a = RNG.integers(0, 3, size=(3, h, w)).astype(np.float32)
    fill = uniform_fill(x.shape, -1.0, 0.0, seed=5) if mode == "deletion" else np.zeros(2)
    for g in (1, 2):
        got = [(k, v.copy()) for k, v in perturbation_steps(x, a, r, fill, order, mode, g)]
        want = list(perturbation_steps_ref(x, a, r, fill, order, mode, g))
        assert [k for k, _ in got] == [k for k, _ in want] == list(range(len(want)))
        for (_, u), (_, v) in zip(got, want):
            np.testing.assert_array_equal(u, v)
        start, end = (x, fill) if mode == "deletion" else (np.zeros_like(x), x)
        np.testing.assert_array_equal(got[0][1], start)
        np.testing.assert_array_equal(got[-1][1], np.broadcast_to(end, x.shape))


def test_morf_step_one_removes_the_top_region_and_counts():
    x = np.ones((1, 1, 4, 4), np.float32)
    a = np.zeros((1, 4, 4))
    a[0, 2:, 0:2] = 5.0  # region 2 of the 2 x 2 grid
    steps = perturbation_steps(x, a, 2, 0.0, "morf", "deletion", n_steps=2)
    k, x0 = next(steps)
    assert k == 0 and x0.sum() == 16
    k, x1 = next(steps)
    assert k == 1 and x1.sum() == 12 and (x1[0, 0, 2:, :2] == 0).all()
    k, x2 = next(steps)
    assert k == 2 and x2.sum() == 8 and (x2[0, 0, :2, :2] == 0).all()  # tie: lowest region index
    assert next(steps, None) is None
    # several regions per step (feature groups) and pixel flipping
    assert len(list(perturbation_steps(x, a, 1, 0.0, regions_per_step=3))) == 1 + 6  # ceil(16 / 3)


def test_perturb_regions_in_place():
    x = RNG.random((2, 3, 5, 5)).astype(np.float32)
    src = RNG.random((2, 3, 5, 5)).astype(np.float32)
    order = region_order(RNG.normal(size=(2, 5, 5)), 2)
    a, b = x.copy(), x.copy()
    perturb_regions(a, src, order, 2, 1, 4)
    perturb_regions_ref(b, src, order, 2, 1, 4)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="C-contiguous"):
        perturb_regions(x[:, :, ::2], src, order, 2, 0, 1)
    with pytest.raises(ValueError, match="start <= stop"):
        perturb_regions(a, src, order, 2, 3, 1)


def test_uniform_fill_is_seeded_and_batch_independent():
    f = uniform_fill((4, 3, 5, 5), 0.25, 0.5, seed=11)
    assert f.dtype == np.float32 and (f >= 0.25).all() and (f < 0.5).all()
    np.testing.assert_array_equal(f, uniform_fill((4, 3, 5, 5), 0.25, 0.5, seed=11))
    assert not np.array_equal(f, uniform_fill((4, 3, 5, 5), 0.25, 0.5, seed=12))
    np.testing.assert_array_equal(uniform_fill((2, 3, 5, 5), 0.25, 0.5, seed=11, ids=[3, 1]), f[[3, 1]])


def test_errors():
    x = RNG.random((2, 1, 4, 4)).astype(np.float32)
    a = RNG.normal(size=(2, 4, 4))
    a[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="attributions contains NaN"):
        next(perturbation_steps(x, a, 2, 0.0))
    with pytest.raises(ValueError, match="r \\(region size\\) must be a positive int"):
        region_sums(np.zeros((1, 4, 4)), 0)
    with pytest.raises(ValueError, match="n_steps must be"):
        next(perturbation_steps(x, np.zeros((2, 4, 4)), 2, 0.0, n_steps=5))
    with pytest.raises(ValueError, match="fill must be"):
        next(perturbation_steps(x, np.zeros((2, 4, 4)), 2, np.zeros((3, 3))))
    with pytest.raises(ValueError, match="order must be one of"):
        region_order(np.zeros((1, 4, 4)), 2, "random")
