"""kernels.ranking: kernel == numpy reference, deterministic ties, clear errors."""
import numpy as np
import pytest

from kernels.ranking import rank_order, rank_order_ref, rank_positions, rank_positions_ref

RNG = np.random.default_rng(1234)


@pytest.mark.parametrize(
    "attr, granularity",
    [
        (RNG.normal(size=(4, 6, 5)).astype(np.float32), "pixel"),
        (RNG.normal(size=(3, 1, 4, 4)), "pixel"),
        (RNG.integers(-2, 3, size=(4, 5, 5)), "pixel"),  # integer-valued, many ties
        (np.zeros((2, 4, 4)), "pixel"),  # all ties
        (np.ones((3, 1, 1)), "pixel"),  # one pixel
        (RNG.normal(size=(3, 3, 4, 4)), "element"),
        (RNG.integers(0, 2, size=(2, 3, 3, 3)).astype(np.float32), "element"),
        (np.array([[[np.inf, -np.inf], [0.0, -0.0]]]), "pixel"),
    ],
)
def test_rank_order_matches_reference(attr, granularity):
    got = rank_order(attr, granularity)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, rank_order_ref(attr, granularity))
    np.testing.assert_array_equal(rank_positions(got), rank_positions_ref(got))


def test_ties_break_by_ascending_flat_index():
    a = np.array([[[1.0, 3.0, 1.0], [3.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(rank_order(a)[0], [1, 3, 0, 2, 5, 4])
    np.testing.assert_array_equal(rank_order(np.zeros((1, 2, 3)))[0], np.arange(6))


def test_rank_positions_is_inverse():
    o = rank_order(RNG.normal(size=(3, 4, 4)))
    pos = rank_positions(o)
    for n in range(3):
        np.testing.assert_array_equal(pos[n][o[n]], np.arange(16))


def test_errors():
    a = np.zeros((2, 3, 3))
    a[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN .*\(1, 2, 0\)"):
        rank_order(a)
    with pytest.raises(ValueError, match="aggregate channels first"):
        rank_order(np.zeros((2, 3, 4, 4)), "pixel")
    with pytest.raises(ValueError, match="granularity must be one of"):
        rank_order(np.zeros((2, 4, 4)), "channel")
    with pytest.raises(ValueError, match="3-d or 4-d"):
        rank_order(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="not a permutation"):
        rank_positions(np.array([[0, 1, 2], [0, 0, 2]]))
