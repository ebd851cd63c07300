"""kernels.ranking: kernel == numpy reference, seeded random ties, clear errors."""
import numpy as np
import pytest

from kernels.ranking import rank_order, rank_order_ref, rank_positions, rank_positions_ref, tie_priorities

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
    ids = np.arange(len(attr))[::-1] * 7 + 3
    np.testing.assert_array_equal(rank_order(attr, granularity, tie_seed=5, ids=ids),
                                  rank_order_ref(attr, granularity, tie_seed=5, ids=ids))
    np.testing.assert_array_equal(rank_order(attr, granularity, tie_seed=None),
                                  rank_order_ref(attr, granularity, tie_seed=None))


def test_long_tie_runs_match_reference():
    # runs above the insertion-sort length (32) take the radix path
    a = np.zeros((3, 20, 20), np.float32)
    a[:, 5:8, 5:8] = 1.0
    a[1, 0, :3] = -1.0
    np.testing.assert_array_equal(rank_order(a), rank_order_ref(a))


def test_index_ties_with_tie_seed_none():
    a = np.array([[[1.0, 3.0, 1.0], [3.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(rank_order(a, tie_seed=None)[0], [1, 3, 0, 2, 5, 4])
    np.testing.assert_array_equal(rank_order(np.zeros((1, 2, 3)), tie_seed=None)[0], np.arange(6))


def test_ties_follow_the_tie_priorities():
    """Known answer: distinct values keep their order; within a tie the lower priority comes
    first; an all-tie map is ordered by priority alone."""
    a = np.array([[[1.0, 3.0, 1.0], [3.0, 0.0, 1.0]]])
    pr = tie_priorities(1, 6, 0)[0]
    got = rank_order(a)[0]
    assert sorted(got[:2]) == [1, 3] and sorted(got[2:5]) == [0, 2, 5] and got[5] == 4
    assert list(got[:2]) == sorted([1, 3], key=lambda j: pr[j])
    assert list(got[2:5]) == sorted([0, 2, 5], key=lambda j: pr[j])
    np.testing.assert_array_equal(rank_order(np.zeros((1, 2, 3)))[0], np.argsort(pr))


def test_tie_order_is_seeded_per_image_and_shared_by_maps():
    z = np.zeros((4, 8, 8))
    o = rank_order(z)
    np.testing.assert_array_equal(o, rank_order(z))                     # deterministic
    assert len({tuple(r) for r in o}) == 4                               # differs per image
    assert not np.array_equal(o, rank_order(z, tie_seed=1))              # differs per seed
    np.testing.assert_array_equal(rank_order(z, ids=[2, 3, 0, 1]), o[[2, 3, 0, 1]])  # by image id
    # two maps with the same tie sets (here: any constant map) get the same tie order
    np.testing.assert_array_equal(rank_order(np.full((4, 8, 8), 0.3, np.float32)), o)
    # every input is a permutation; the top rows are not removed first
    np.testing.assert_array_equal(np.sort(o, axis=1), np.tile(np.arange(64), (4, 1)))
    top = o[:, :16]  # the first quarter removed: index order would be rows 0-1 exactly
    assert not np.array_equal(np.sort(top, axis=1), np.tile(np.arange(16), (4, 1)))


def test_tie_priorities_are_uniform_ranks():
    """The position of each input in an all-tie order is uniform over images (chi-square on
    1000 images x 16 inputs: the mean position is (P-1)/2 within 4 standard errors)."""
    o = rank_order(np.zeros((1000, 4, 4)))
    pos = rank_positions(o).astype(float)
    se = np.sqrt((16 ** 2 - 1) / 12 / 1000)
    assert np.all(np.abs(pos.mean(axis=0) - 7.5) < 4 * se), pos.mean(axis=0)


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
    with pytest.raises(ValueError, match="tie_seed must be a non-negative int"):
        rank_order(np.zeros((2, 3, 3)), tie_seed=-1)
    with pytest.raises(ValueError, match="ids must be 2 non-negative ints"):
        rank_order(np.zeros((2, 3, 3)), ids=[0])
    with pytest.raises(ValueError, match="negative"):
        rank_order(np.zeros((2, 3, 3)), ids=[0, -1])
