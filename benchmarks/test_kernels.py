"""numba kernels vs their numpy / scipy references (and the ROAD reference code's imputer).

One group per kernel; the kernel is the suite side, the references are peers (ratio = reference
time per item / kernel time per item: the kernel's speed-up). Targets (issue 4): imputation >= 30x
per image against the ROAD reference code's way (lil_matrix + spsolve per image), Spearman >= 10x
against a loop of scipy.stats.spearmanr, rank + ROAR mask >= 3x. The kernels run on all numba
threads, the references on one. Every side checks its output against the other side's on the
same input. ``SALIENCYBENCH_BENCH_N`` sets the ROAR masking benchmark's dataset size (default
50,000 images of 3 x 32 x 32, about 3 GB of memory; 64 in quick mode).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from kernels.imputation import impute, impute_ref
from kernels.masking import rank_and_mask, rank_and_mask_ref
from kernels.ranking import rank_order, rank_order_ref
from kernels.similarity import MapSimilarity, hog_pearson, spearman, spearman_ref, ssim, ssim_ref

REF_IMAGES = 16   # the slow imputation references run on the first 16 images


def impute_road_nli(x, m, noise=0.01, seed=0):
    """Re-implementation of the ROAD reference imputer (Rong et al. 2022, tleemann/road_evaluation,
    ``imputations.py``, ``NoisyLinearImputer.__call__`` / ``setup_sparse_system``), the way Quantus
    also imputes: per image, a ``scipy.sparse.lil_matrix`` filled by fancy assignment for each of
    the 8 neighbour offsets (unknown neighbours: ``A[rows, cols] = weight``; known neighbours:
    ``b[rows] -= weight * value``; weights of neighbours outside the image subtracted from the
    diagonal sum), the diagonal set to ``-sum``, ``spsolve(csc_matrix(A), b)`` with ``b`` of shape
    (n_unknown, C), then ``noise * randn`` added (numpy's generator instead of torch.randn).
    ``m`` is True where removed (ROAD's mask is 0 there)."""
    import scipy.sparse
    import scipy.sparse.linalg

    rng = np.random.default_rng(seed)
    n, c, h, w = x.shape
    out = x.copy()
    nbrs = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
            ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]
    for i in range(n):
        maskflt = (~m[i]).ravel().astype(np.float64)  # ROAD: 1 = present, 0 = imputed
        img = x[i].reshape(c, -1)
        idx = np.argwhere(maskflt == 0).flatten()
        vid = np.zeros(len(maskflt), dtype=int)
        vid[idx] = np.arange(len(idx))
        a = scipy.sparse.lil_matrix((len(idx), len(idx)))
        b = np.zeros((len(idx), c))
        sum_nb = np.ones(len(idx))
        for (dy, dx), wt in nbrs:
            c1 = idx % w + dx
            c0 = idx // w + dy
            valid = ~((c0 < 0) | (c1 < 0) | (c0 >= h) | (c1 >= w))
            coords = (idx + dy * w + dx)[valid]
            ids = np.argwhere(valid == 1).flatten()
            known = maskflt[coords] > 0.5
            b[ids[known], :] -= wt * img[:, coords[known]].T
            unknown = maskflt[coords] < 0.5
            a[ids[unknown], vid[coords[unknown]]] = wt
            invalid = np.argwhere(valid == 0).flatten()
            sum_nb[invalid] = sum_nb[invalid] - wt
        a[np.arange(len(idx)), np.arange(len(idx))] = -sum_nb
        res = scipy.sparse.linalg.spsolve(scipy.sparse.csc_matrix(a), b).reshape(len(idx), c)
        out[i].reshape(c, -1)[:, idx] = res.T + noise * rng.standard_normal(res.T.shape)
    return out


# -- imputation ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def impute_data(quick):
    n, s = (REF_IMAGES, 16) if quick else (256, 32)
    rng = np.random.default_rng(0)
    return rng.random((n, 3, s, s), dtype=np.float32), rng.random((n, s, s)) < 0.5


@pytest.mark.benchmark(group="kernel-impute")
def test_impute_kernel(speed, impute_data):
    x, m = impute_data
    out = speed(lambda: impute(x, m, noise_std=0.01, seed=0), side="kernel", role="suite",
                items=len(x), rounds=7)
    k = REF_IMAGES
    np.testing.assert_allclose(out[:k], impute_ref(x[:k], m[:k], noise_std=0.01, seed=0),
                               rtol=0, atol=1e-5)


@pytest.mark.benchmark(group="kernel-impute")
def test_impute_coo_spsolve_reference(speed, impute_data):
    x, m = impute_data[0][:REF_IMAGES], impute_data[1][:REF_IMAGES]
    out = speed(lambda: impute_ref(x, m, noise_std=0.01, seed=0), side="coo_spsolve", role="peer",
                items=len(x), rounds=7)
    np.testing.assert_allclose(out, impute(x, m, noise_std=0.01, seed=0), rtol=0, atol=1e-5)


@pytest.mark.benchmark(group="kernel-impute")
def test_impute_road_reference_lil(speed, impute_data):
    x, m = impute_data[0][:REF_IMAGES], impute_data[1][:REF_IMAGES]
    out = speed(lambda: impute_road_nli(x, m), side="road_lil", role="peer", items=len(x), rounds=9)
    kept = ~np.broadcast_to(m[:, None], x.shape)
    np.testing.assert_array_equal(out[kept], x[kept])
    # the same linear system: without noise both give the same imputed values
    np.testing.assert_allclose(impute_road_nli(x, m, noise=0.0), impute(x, m, noise_std=0.0),
                               rtol=0, atol=1e-5)


# -- similarity ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs(quick):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(16 if quick else 128, 32, 32)).astype(np.float32)
    return a, a + rng.normal(size=a.shape).astype(np.float32)


@pytest.mark.benchmark(group="kernel-spearman")
def test_spearman_kernel(speed, pairs):
    a, b = pairs
    out = speed(lambda: spearman(a, b), side="kernel", role="suite", items=len(a), rounds=10)
    np.testing.assert_allclose(out, spearman_ref(a, b), rtol=0, atol=1e-12)


@pytest.mark.benchmark(group="kernel-spearman")
def test_spearman_scipy_loop(speed, pairs):
    a, b = pairs
    out = speed(lambda: spearman_ref(a, b), side="scipy_loop", role="peer", items=len(a), rounds=10)
    np.testing.assert_allclose(out, spearman(a, b), rtol=0, atol=1e-12)


@pytest.mark.benchmark(group="kernel-ssim")
def test_ssim_kernel(speed, pairs):
    a, b = pairs
    out = speed(lambda: ssim(a, b, data_range=8.0), side="kernel", role="suite", items=len(a),
                rounds=10)
    np.testing.assert_allclose(out, ssim_ref(a, b, data_range=8.0), rtol=0, atol=1e-9)


@pytest.mark.benchmark(group="kernel-ssim")
def test_ssim_numpy_reference(speed, pairs):
    a, b = pairs
    out = speed(lambda: ssim_ref(a, b, data_range=8.0), side="numpy_ref", role="peer",
                items=len(a), rounds=10)
    np.testing.assert_allclose(out, ssim(a, b, data_range=8.0), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def map_sets(quick):
    """The sanity checks' comparison: maps of 32 x 32 normalised to [-1, 1] (float32) against a
    reference set (1024 of each; 32 in quick mode)."""
    rng = np.random.default_rng(4)

    def maps():
        m = rng.normal(size=(32 if quick else 1024, 32, 32)).astype(np.float32)
        return m / np.abs(m).reshape(len(m), -1).max(1)[:, None, None]

    return maps(), maps()


def _separate(ref, other):
    """The four measures by the separate functions (what MapSimilarity returns, value for value)."""
    aa, ab = np.abs(ref), np.abs(other)
    return {"spearman_abs": spearman(ref, other, absolute=True), "spearman": spearman(ref, other),
            "ssim": ssim(aa, ab, data_range=1.0), "hog": hog_pearson(aa, ab)}


def _same_measures(got, want):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-9, err_msg=k)


@pytest.mark.benchmark(group="kernel-map-similarity")
def test_map_similarity_batched(speed, map_sets):
    ref, other = map_sets
    comp = MapSimilarity(ref, data_range=1.0)   # built once, as the sanity checks do
    out = speed(lambda: comp(other), side="batched", role="suite", items=len(other), rounds=9)
    _same_measures(out, _separate(ref, other))


@pytest.mark.benchmark(group="kernel-map-similarity")
def test_map_similarity_separate_functions(speed, map_sets):
    ref, other = map_sets
    out = speed(lambda: _separate(ref, other), side="separate", role="peer", items=len(other),
                rounds=9)
    _same_measures(MapSimilarity(ref, data_range=1.0)(other), out)


# -- ranking and ROAR masking --------------------------------------------------------------------

@pytest.fixture(scope="module")
def rank_maps(quick):
    return np.random.default_rng(3).random((64 if quick else 4096, 32, 32), dtype=np.float32)


@pytest.mark.benchmark(group="kernel-rank-order")
def test_rank_order_kernel(speed, rank_maps):
    out = speed(lambda: rank_order(rank_maps), side="kernel", role="suite", items=len(rank_maps))
    np.testing.assert_array_equal(out, rank_order_ref(rank_maps))


@pytest.mark.benchmark(group="kernel-rank-order")
def test_rank_order_numpy_reference(speed, rank_maps):
    out = speed(lambda: rank_order_ref(rank_maps), side="numpy_ref", role="peer",
                items=len(rank_maps))
    np.testing.assert_array_equal(out, rank_order(rank_maps))


@pytest.fixture(scope="module")
def roar_data(quick):
    n = 64 if quick else int(os.environ.get("SALIENCYBENCH_BENCH_N", "50000"))
    rng = np.random.default_rng(2)
    x = rng.random((n, 3, 32, 32), dtype=np.float32)
    a = rng.random((n, 32, 32), dtype=np.float32)
    return x, a, np.array([0.49, 0.48, 0.45])


def _same_masking(got, x, a, fill):
    """``got`` equals the numpy reference's output on the first (up to 64) images."""
    k = min(len(x), 64)
    np.testing.assert_array_equal(got[:k], rank_and_mask_ref(x[:k], a[:k], 0.5, fill, "remove"))


@pytest.mark.benchmark(group="kernel-rank-and-mask")
def test_rank_and_mask_kernel(speed, roar_data):
    x, a, fill = roar_data
    out = speed(lambda: rank_and_mask(x, a, 0.5, fill, "remove"), side="kernel", role="suite",
                rounds=2)
    _same_masking(out, x, a, fill)


@pytest.mark.benchmark(group="kernel-rank-and-mask")
def test_rank_and_mask_numpy_reference(speed, roar_data):
    x, a, fill = roar_data
    out = speed(lambda: rank_and_mask_ref(x, a, 0.5, fill, "remove"), side="numpy_ref",
                role="peer", rounds=2)
    k = min(len(x), 64)
    np.testing.assert_array_equal(out[:k], rank_and_mask(x[:k], a[:k], 0.5, fill, "remove"))
