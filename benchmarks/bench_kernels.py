"""Kernel vs numpy/scipy reference timings, measured side by side in one run.

Run as pytest-benchmark tests (the file is passed explicitly, so the repo's ``testpaths`` and
``python_files`` do not matter)::

    .venv/bin/python -m pytest benchmarks/bench_kernels.py -p no:cacheprovider --benchmark-only -s

or as a plain script (prints the same table)::

    .venv/bin/python benchmarks/bench_kernels.py [case names]

Every kernel is called once before timing, so JIT compilation is never timed.  The printed
ratio (reference time per item / kernel time per item) comes from the medians of ``repeats``
``perf_counter`` timings of kernel and reference taken alternately in the same run, so both see
the same machine load (the 1-minute load average is printed with it); under pytest, pytest-benchmark also times the kernel for its table.  ``SALIENCYBENCH_BENCH_N`` overrides the dataset size of the ROAR
benchmark (default 50,000 images of 3 x 32 x 32; needs about 3 GB of memory).

Targets (issue 4): imputation >= 30x per image against the ROAD reference code's way (lil_matrix
build + spsolve per image), Spearman >= 10x against a loop of scipy.stats.spearmanr, rank + ROAR
mask >= 3x.  The kernels run on all cores (numba threads), the references on one.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.imputation import impute, impute_ref  # noqa: E402
from kernels.masking import rank_and_mask, rank_and_mask_ref  # noqa: E402
from kernels.ranking import rank_order, rank_order_ref  # noqa: E402
from kernels.similarity import MapSimilarity, hog_pearson, spearman, spearman_ref, ssim, ssim_ref  # noqa: E402


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _side_by_side(kernel, ref, d, repeats):
    """Median times of kernel and reference over ``repeats`` rounds, taken alternately (reference,
    kernel, reference, ...) so both see the same machine load."""
    tk, tr = [], []
    for _ in range(repeats):
        tr.append(_time(lambda: ref(d)))
        tk.append(_time(lambda: kernel(d)))
    return float(np.median(tk)), float(np.median(tr))


# ----------------------------------------------------------------------------- cases
# Each case: (name, make_data() -> dict, kernel(d), reference(d), kernel_items, ref_items, repeats)
# The ratio is per item (image or pair): (t_ref / ref_items) / (t_kernel / kernel_items).

def _impute_data():
    rng = np.random.default_rng(0)
    x = rng.random((256, 3, 32, 32), dtype=np.float32)
    m = rng.random((256, 32, 32)) < 0.5
    return {"x": x, "m": m}


def _impute_road_nli(x, m, noise=0.01, seed=0):
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


def _spearman_data():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(128, 32, 32)).astype(np.float32)
    return {"a": a, "b": a + rng.normal(size=a.shape).astype(np.float32)}


def _similarity_data():
    """The sanity checks' comparison: 1024 maps of 32 x 32 normalised to [-1, 1] (float32) against a
    reference set; the comparator (reference ranks, SSIM statistics, HOG features) built once."""
    rng = np.random.default_rng(4)

    def maps():
        m = rng.normal(size=(1024, 32, 32)).astype(np.float32)
        return m / np.abs(m).reshape(len(m), -1).max(1)[:, None, None]

    ref, other = maps(), maps()
    return {"ref": ref, "other": other, "comp": MapSimilarity(ref, data_range=1.0)}


def _similarity_separate(d):
    """The four measures by the separate functions (what MapSimilarity returns, value for value)."""
    a, b = d["ref"], d["other"]
    aa, ab = np.abs(a), np.abs(b)
    return (spearman(a, b, absolute=True), spearman(a, b), ssim(aa, ab, data_range=1.0),
            hog_pearson(aa, ab))


def _roar_data():
    n = int(os.environ.get("SALIENCYBENCH_BENCH_N", "50000"))
    rng = np.random.default_rng(2)
    x = rng.random((n, 3, 32, 32), dtype=np.float32)
    a = rng.random((n, 32, 32), dtype=np.float32)
    return {"x": x, "a": a, "fill": np.array([0.49, 0.48, 0.45])}


CASES = {
    "impute_vs_coo_spsolve_ref_3x32x32_half": (  # impute_ref: same system built faster (COO)
        _impute_data,
        lambda d: impute(d["x"], d["m"], noise_std=0.01, seed=0),
        lambda d: impute_ref(d["x"][:16], d["m"][:16], noise_std=0.01, seed=0),
        256, 16, 7,
    ),
    "impute_vs_ROAD_NoisyLinearImputer_lil": (  # the target: >= 30x
        _impute_data,
        lambda d: impute(d["x"], d["m"], noise_std=0.01, seed=0),
        lambda d: _impute_road_nli(d["x"][:16], d["m"][:16]),
        256, 16, 9,
    ),
    "spearman_128_pairs_32x32": (
        _spearman_data,
        lambda d: spearman(d["a"], d["b"]),
        lambda d: spearman_ref(d["a"], d["b"]),
        128, 128, 10,
    ),
    "ssim_128_pairs_32x32": (
        _spearman_data,
        lambda d: ssim(d["a"], d["b"], data_range=8.0),
        lambda d: ssim_ref(d["a"], d["b"], data_range=8.0),
        128, 128, 10,
    ),
    "map_similarity_1024_vs_separate_functions": (  # per map, all four measures
        _similarity_data,
        lambda d: d["comp"](d["other"]),
        _similarity_separate,
        1024, 1024, 9,
    ),
    "rank_order_pixel_4096x32x32": (
        lambda: {"a": np.random.default_rng(3).random((4096, 32, 32), dtype=np.float32)},
        lambda d: rank_order(d["a"]),
        lambda d: rank_order_ref(d["a"]),
        4096, 4096, 5,
    ),
    "rank_and_roar_mask_dataset_3x32x32": (
        _roar_data,
        lambda d: rank_and_mask(d["x"], d["a"], 0.5, d["fill"], "remove"),
        lambda d: rank_and_mask_ref(d["x"], d["a"], 0.5, d["fill"], "remove"),
        1, 1, 2,
    ),
}


def _prepare(name):
    make, kernel, ref, nk, nr, repeats = CASES[name]
    d = make()
    kernel(d)  # warm-up: JIT compile (or load the cache) outside the timing
    return d, kernel, ref, nk, nr, repeats


TARGETS = {
    "impute_vs_ROAD_NoisyLinearImputer_lil": 30.0,
    "spearman_128_pairs_32x32": 10.0,
    "rank_and_roar_mask_dataset_3x32x32": 3.0,
}


def _report(name, t_kernel, nk, t_ref, nr):
    ratio = (t_ref / nr) / (t_kernel / nk)
    target = TARGETS.get(name)
    verdict = "" if target is None else f"   target >= {target:.0f}x: {'met' if ratio >= target else 'NOT met'}"
    print(f"{name:40s} kernel {t_kernel / nk * 1e6:10.1f} us/item   reference {t_ref / nr * 1e6:10.1f} us/item"
          f"   ratio {ratio:6.1f}x{verdict}   (load {os.getloadavg()[0]:.1f})")
    return ratio


# ----------------------------------------------------------------------------- pytest-benchmark
try:
    import pytest
except ImportError:  # script mode without pytest
    pytest = None

if pytest is not None:

    @pytest.mark.parametrize("name", list(CASES))
    def test_kernel_vs_reference(benchmark, name):
        d, kernel, ref, nk, nr, repeats = _prepare(name)
        benchmark.pedantic(kernel, args=(d,), rounds=repeats, iterations=1, warmup_rounds=1)
        t_kernel, t_ref = _side_by_side(kernel, ref, d, repeats)
        ratio = _report(name, t_kernel, nk, t_ref, nr)
        benchmark.extra_info["reference_s_per_item"] = t_ref / nr
        benchmark.extra_info["kernel_over_reference_speedup"] = ratio


def main():
    import numba

    print(f"numba {numba.__version__}, {numba.get_num_threads()} threads, {os.cpu_count()} CPUs; medians")
    names = sys.argv[1:] or list(CASES)
    for name in names:
        d, kernel, ref, nk, nr, repeats = _prepare(name)
        t_kernel, t_ref = _side_by_side(kernel, ref, d, repeats)
        _report(name, t_kernel, nk, t_ref, nr)
        del d


if __name__ == "__main__":
    main()
