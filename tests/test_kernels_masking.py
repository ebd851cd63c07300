"""kernels.masking: ROAR/KAR masks, exact counts, identities, seeded random control."""
import math

import numpy as np
import pytest

from kernels.masking import (
    fraction_to_count,
    mask_from_order,
    mask_from_order_ref,
    mask_images,
    mask_images_ref,
    random_order,
    rank_and_mask,
    rank_and_mask_ref,
)
from kernels.ranking import rank_order

RNG = np.random.default_rng(99)
FILL = np.array([-1.0, -2.0, -3.0])
TS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.999, 1.0]


def _images(n=3, c=3, h=5, w=4):
    return RNG.random((n, c, h, w)).astype(np.float32)  # values in [0, 1): never equal to FILL


ATTRS = {
    "normal": lambda n, c, h, w, g: RNG.normal(size=(n, h, w) if g == "pixel" else (n, c, h, w)),
    "integer": lambda n, c, h, w, g: RNG.integers(0, 3, size=(n, 1, h, w) if g == "pixel" else (n, c, h, w)),
    "all_ties": lambda n, c, h, w, g: np.zeros((n, h, w) if g == "pixel" else (n, c, h, w), np.float32),
}


def test_fraction_to_count():
    assert fraction_to_count(0.0, 1024) == 0
    assert fraction_to_count(1.0, 1024) == 1024
    assert fraction_to_count(0.3, 1024) == math.floor(0.3 * 1024) == 307
    assert fraction_to_count(0.29, 100) == 29  # 0.29 * 100 == 28.999999999999996
    assert fraction_to_count(0.999, 10) == 9
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="t must"):
            fraction_to_count(bad, 10)


@pytest.mark.parametrize("granularity", ["pixel", "element"])
@pytest.mark.parametrize("mode", ["remove", "keep"])
@pytest.mark.parametrize("kind", sorted(ATTRS))
def test_kernels_match_reference(kind, mode, granularity):
    x = _images()
    a = ATTRS[kind](*x.shape, granularity)
    order = rank_order(a, granularity)
    for t in TS:
        want = mask_images_ref(x, order, t, FILL, mode, granularity)
        np.testing.assert_array_equal(mask_images(x, order, t, FILL, mode, granularity), want)
        np.testing.assert_array_equal(rank_and_mask(x, a, t, FILL, mode, granularity), want)
        np.testing.assert_array_equal(rank_and_mask_ref(x, a, t, FILL, mode, granularity), want)
        np.testing.assert_array_equal(mask_from_order(order, t, mode), mask_from_order_ref(order, t, mode))
        for seed, ids in ((None, None), (3, [5, 1, 9])):
            o2 = rank_order(a, granularity, tie_seed=seed, ids=ids)
            np.testing.assert_array_equal(
                rank_and_mask(x, a, t, FILL, mode, granularity, tie_seed=seed, ids=ids),
                mask_images_ref(x, o2, t, FILL, mode, granularity))
            np.testing.assert_array_equal(
                rank_and_mask_ref(x, a, t, FILL, mode, granularity, tie_seed=seed, ids=ids),
                mask_images_ref(x, o2, t, FILL, mode, granularity))


@pytest.mark.parametrize("granularity", ["pixel", "element"])
def test_roar_replaces_exactly_floor_t_p(granularity):
    x = _images(n=4, h=6, w=6)
    a = RNG.integers(0, 4, size=(4, 6, 6) if granularity == "pixel" else x.shape)
    p = 36 if granularity == "pixel" else 3 * 36
    for t in TS:
        k = math.floor(t * p)
        for mode, count in (("remove", k), ("keep", p - k)):
            out = rank_and_mask(x, a, t, FILL, mode, granularity)
            changed = out != x
            if granularity == "pixel":
                assert (changed.all(axis=1) == changed.any(axis=1)).all()  # whole pixels
                changed = changed.any(axis=1)
            assert (changed.reshape(4, -1).sum(axis=1) == count).all(), (t, mode)
            sel = np.broadcast_to(changed[:, None], x.shape) if granularity == "pixel" else changed
            assert (out[sel] < 0).all()


def test_identities_and_dtype():
    x = _images()
    a = RNG.normal(size=(3, 5, 4))
    np.testing.assert_array_equal(rank_and_mask(x, a, 0.0, FILL, "remove"), x)
    np.testing.assert_array_equal(rank_and_mask(x, a, 1.0, FILL, "keep"), x)
    full = rank_and_mask(x, a, 1.0, FILL, "remove")
    np.testing.assert_array_equal(full, np.broadcast_to(FILL[None, :, None, None], x.shape).astype(np.float32))
    assert full.dtype == np.float32
    assert rank_and_mask(x.astype(np.float64), a, 0.5, 0.0).dtype == np.float64


def test_top_pixels_are_the_removed_ones():
    x = np.ones((1, 2, 2, 2), np.float32)
    a = np.array([[[0.5, 2.0], [2.0, -1.0]]])
    out = rank_and_mask(x, a, 0.5, [0.0, 0.0], "remove")
    np.testing.assert_array_equal(out[0, 0], [[1, 0], [0, 1]])
    out = rank_and_mask(x, a, 0.25, [0.0, 0.0], "remove", tie_seed=None)  # tie at 2.0: index order
    np.testing.assert_array_equal(out[0, 1], [[1, 0], [1, 1]])
    first = rank_order(a)[0, 0]  # seeded ties: one of the two tied pixels, the one ranked first
    assert first in (1, 2)
    out = rank_and_mask(x, a, 0.25, [0.0, 0.0], "remove")
    assert out[0, 1].ravel()[first] == 0 and out[0, 1].sum() == 3


def test_all_tie_map_removes_a_random_set_not_the_top_rows():
    """ROAR on an all-tie map: the removed pixels are not the first rows (index order), they are
    spread like a random choice: each pixel removed in about t of 400 images."""
    x = np.ones((400, 1, 8, 8), np.float32)
    out = rank_and_mask(x, np.zeros((400, 8, 8)), 0.25, [0.0])
    removed = out[:, 0] == 0
    assert (removed.reshape(400, -1).sum(axis=1) == 16).all()
    assert not removed[:, :2].all()                       # index order: rows 0-1 exactly
    share = removed.mean(axis=0)                          # per pixel: Binomial(400, 0.25) / 400
    assert np.all(np.abs(share - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 400)), share.round(2)


def test_one_pixel_and_constant_images():
    x = np.full((2, 3, 1, 1), 0.5, np.float32)
    a = np.zeros((2, 1, 1))
    np.testing.assert_array_equal(rank_and_mask(x, a, 0.5, FILL), x)  # floor(0.5) = 0
    np.testing.assert_array_equal(rank_and_mask(x, a, 1.0, FILL)[:, :, 0, 0], np.tile(FILL, (2, 1)))


def test_random_order_reproducible_and_seeded():
    a = random_order(5, 16, seed=3)
    np.testing.assert_array_equal(a, random_order(5, 16, seed=3))
    assert not np.array_equal(a, random_order(5, 16, seed=4))
    np.testing.assert_array_equal(np.sort(a, axis=1), np.tile(np.arange(16), (5, 1)))
    np.testing.assert_array_equal(random_order(2, 16, seed=3), a[:2])
    x = _images(n=5, h=4, w=4)
    np.testing.assert_array_equal(mask_images(x, a, 0.5, FILL), mask_images_ref(x, a, 0.5, FILL))


def test_errors():
    x = _images()
    a = RNG.normal(size=(3, 5, 4))
    bad = a.copy()
    bad[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="attributions contains NaN"):
        rank_and_mask(x, bad, 0.5, FILL)
    xb = x.copy()
    xb[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="images contains NaN"):
        rank_and_mask(xb, a, 0.5, FILL)
    with pytest.raises(ValueError, match=r"fill must be a scalar or have shape \(3,\)"):
        rank_and_mask(x, a, 0.5, [0.0, 1.0])
    with pytest.raises(ValueError, match="mode must be one of"):
        rank_and_mask(x, a, 0.5, FILL, mode="delete")
    with pytest.raises(ValueError, match="t must be in"):
        rank_and_mask(x, a, 1.2, FILL)
    with pytest.raises(ValueError, match="images must have dtype"):
        rank_and_mask(x.astype(np.int32), a, 0.5, FILL)
    with pytest.raises(ValueError, match="do not fit"):
        rank_and_mask(x, a[:, :4, :4], 0.5, FILL)
    with pytest.raises(ValueError, match="order must have shape"):
        mask_images(x, random_order(3, 10, 0), 0.5, FILL)
    with pytest.raises(ValueError, match="seed must be"):
        random_order(3, 4, seed=-1)
