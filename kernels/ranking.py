"""Ranking of attribution maps, per image: which inputs are the most important.

Contract (every function here):

* Order is **descending** by attribution value.  **Ties** are broken by **ascending flat index**
  (a stable sort of the negated values), so an all-equal map ranks inputs 0, 1, 2, ... and the
  result never depends on the platform or on the number of threads.  ``-0.0`` and ``0.0`` are
  equal.  ``+inf`` ranks first and ``-inf`` last; NaN is rejected with a ValueError.
* float32 and float64 values are compared as they are; integer attributions are converted to
  float64 (exact up to 2**53).
* ``granularity="pixel"`` ranks the ``P = H*W`` positions of a channel-aggregated map, given as
  ``(N, H, W)`` or ``(N, 1, H, W)``; aggregating channels is the caller's explicit step.
  ``granularity="element"`` ranks all ``P = C*H*W`` entries of an ``(N, C, H, W)`` map
  (``(N, H, W)`` counts as C = 1); flat index ``e = c*H*W + h*W + w``.
"""
from __future__ import annotations

import numba
import numpy as np

from ._validate import as_array, check_choice

__all__ = ["rank_order", "rank_order_ref", "rank_positions", "rank_positions_ref", "flatten_for_ranking"]

GRANULARITIES = ("pixel", "element")


@numba.njit(cache=True)
def _sort_keys(values, descending, keys):
    # Order-preserving uint64 keys of float values (-0.0 == 0.0); inverted for descending.
    p = values.shape[0]
    buf = np.empty(p, dtype=np.float64)
    for j in range(p):
        buf[j] = values[j] + 0.0  # -0.0 + 0.0 == +0.0
    bits = buf.view(np.uint64)
    top = np.uint64(1) << np.uint64(63)
    for j in range(p):
        b = bits[j]
        k = ~b if (b & top) else (b | top)
        keys[j] = ~k if descending else k


@numba.njit(cache=True)
def _radix_argsort(keys, idx, tmp):
    # Stable ascending argsort of uint64 keys into idx (LSD radix, 8-bit digits; a pass whose
    # digit is the same for all keys is skipped).  tmp: scratch of the same size as idx.
    p = keys.shape[0]
    count = np.empty(256, dtype=np.int64)
    src = idx
    dst = tmp
    swapped = False
    for j in range(p):
        src[j] = j
    for s in range(8):
        shift = np.uint64(8 * s)
        count[:] = 0
        for j in range(p):
            count[np.int64((keys[j] >> shift) & np.uint64(255))] += 1
        if count[np.int64((keys[0] >> shift) & np.uint64(255))] == p:
            continue
        total = 0
        for d in range(256):
            c = count[d]
            count[d] = total
            total += c
        for j in range(p):
            e = src[j]
            d = np.int64((keys[e] >> shift) & np.uint64(255))
            dst[count[d]] = e
            count[d] += 1
        src, dst = dst, src
        swapped = not swapped
    if swapped:  # the result is in tmp
        for j in range(p):
            idx[j] = src[j]


@numba.njit(cache=True, parallel=True)
def _rank_order_nb(values):
    # values: (N, P) float -> (N, P) int64, stable descending argsort per row.
    n, p = values.shape
    order = np.empty((n, p), dtype=np.int64)
    for i in numba.prange(n):
        keys = np.empty(p, dtype=np.uint64)
        tmp = np.empty(p, dtype=np.int64)
        _sort_keys(values[i], True, keys)
        _radix_argsort(keys, order[i], tmp)
    return order


@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _rank_positions_nb(order):
    n, p = order.shape
    pos = np.empty((n, p), dtype=np.int64)
    for i in range(n):
        for j in range(p):
            pos[i, order[i, j]] = j
    return pos


@numba.njit(cache=True)
def _first_non_permutation_nb(order):
    # Index of the first row that is not a permutation of 0..P-1, or -1.
    n, p = order.shape
    seen = np.zeros(p, dtype=np.bool_)
    for i in range(n):
        seen[:] = False
        for j in range(p):
            v = order[i, j]
            if v < 0 or v >= p or seen[v]:
                return i
            seen[v] = True
    return -1


def flatten_for_ranking(attributions, granularity: str = "pixel", name: str = "attributions") -> np.ndarray:
    """Validate a map and return it as a C-contiguous ``(N, P)`` float32/float64 array (see module doc)."""
    check_choice(granularity, "granularity", GRANULARITIES)
    a = as_array(attributions, name, ndim=(3, 4))
    if granularity == "pixel" and a.ndim == 4 and a.shape[1] != 1:
        raise ValueError(
            f"{name} for granularity='pixel' must be (N, H, W) or (N, 1, H, W), got {a.shape}: "
            "aggregate channels first (e.g. abs-sum), or use granularity='element'"
        )
    flat = a.reshape(a.shape[0], -1)
    if flat.dtype not in (np.float32, np.float64):  # integers: compared exactly up to 2**53
        flat = flat.astype(np.float64)
    return np.ascontiguousarray(flat)


def rank_order_ref(attributions, granularity: str = "pixel") -> np.ndarray:
    """Plain numpy reference of :func:`rank_order`: stable argsort of the negated values."""
    v = flatten_for_ranking(attributions, granularity)
    return np.argsort(-v, axis=1, kind="stable").astype(np.int64)


def rank_order(attributions, granularity: str = "pixel") -> np.ndarray:
    """Ranking order per image: ``order[n, i]`` is the flat index of the i-th most important input.

    ``attributions``: ``(N, H, W)`` / ``(N, 1, H, W)`` for ``granularity="pixel"`` (P = H*W), or
    ``(N, C, H, W)`` for ``"element"`` (P = C*H*W); any real dtype, no NaN.
    Returns an ``(N, P)`` int64 array; descending values, ties by ascending flat index.
    """
    return _rank_order_nb(flatten_for_ranking(attributions, granularity))


def rank_positions_ref(order) -> np.ndarray:
    """Plain numpy reference of :func:`rank_positions` (inverse permutation per row)."""
    order = _check_order(order)
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(order.shape[1], dtype=np.int64)[None, :].repeat(order.shape[0], 0), axis=1)
    return pos


def rank_positions(order) -> np.ndarray:
    """Rank position of every input: ``pos[n, order[n, i]] = i`` (0 = most important).

    ``order``: ``(N, P)`` integer array whose rows are permutations of ``0..P-1`` (checked).
    """
    return _rank_positions_nb(_check_order(order))


def _check_order(order) -> np.ndarray:
    o = as_array(order, "order", ndim=2)
    if not np.issubdtype(o.dtype, np.integer):
        raise ValueError(f"order must have an integer dtype, got {o.dtype}")
    o = np.ascontiguousarray(o, dtype=np.int64)
    p = o.shape[1]
    bad = _first_non_permutation_nb(o)
    if bad >= 0:
        raise ValueError(f"order row {bad} is not a permutation of 0..{p - 1}")
    return o
