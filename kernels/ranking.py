"""Ranking of attribution maps, per image: which inputs are the most important.

Contract (every function here):

* Order is **descending** by attribution value.  ``-0.0`` and ``0.0`` are equal.  ``+inf`` ranks
  first and ``-inf`` last; NaN is rejected with a ValueError.
* **Ties** (exactly equal values) are broken by a **seeded random order** of the inputs, one per
  image: among tied inputs, the one with the lower *tie priority* comes first.  The priority of
  input ``j`` of the image with id ``d`` under ``tie_seed`` s is a 64-bit SplitMix64 output
  (:func:`tie_priorities`): a fixed random permutation of the inputs of that image, the same for
  every method ranked with the same (s, d) -- so a method and the random control of one case see
  the same tie order -- and different from image to image.  Ties are resolved only where values
  are exactly equal: the order of distinct values never changes (unlike adding jitter, as the
  ROAD reference does with 1e-4 * N(0, 1), which also reorders distinct values closer than about
  1e-4 and so depends on the map's scale).  ``ids`` default to the row numbers ``0..N-1``.
  ``tie_seed=None`` gives the old rule, ties by **ascending flat index** (a stable sort); on a map
  with many ties (input x gradient is 0 wherever the input is 0) that removes whole top rows
  first, a structured, biased order, so the metrics never use it.  Results never depend on the
  platform or on the number of threads.
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

from ._validate import as_array, check_choice, check_seed

__all__ = ["rank_order", "rank_order_ref", "rank_positions", "rank_positions_ref", "flatten_for_ranking",
           "tie_priorities", "check_ties", "TIE_SEED"]

GRANULARITIES = ("pixel", "element")
#: the default tie seed of every ranking kernel (see the module doc)
TIE_SEED = 0


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


@numba.njit(cache=True)
def _h32(x):
    # A 32-bit integer hash (Wellons' "lowbias32"), on uint64 holding 32-bit values: every
    # product is below 2**64, so nothing overflows (jitted or not).
    m = np.uint64(0xFFFFFFFF)
    x = x & m
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & m
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & m
    return x ^ (x >> np.uint64(16))


@numba.njit(cache=True)
def _tie_base(seed, image_id):
    # The key of one image's tie priorities, from (seed, image id) (64-bit ints, split in halves).
    s = np.uint64(seed)
    d = np.uint64(image_id)
    lo = np.uint64(0xFFFFFFFF)
    k = _h32(_h32((s & lo) ^ np.uint64(0x9E3779B9)) ^ (s >> np.uint64(32)))
    return _h32(_h32(k ^ (d & lo)) ^ (d >> np.uint64(32)))


@numba.njit(cache=True)
def _tie_priority(base, j):
    # The 64-bit priority of input j (< 2**32) of the image keyed ``base``: two chained hashes.
    u = np.uint64(j)
    hi = _h32(base ^ _h32(u ^ np.uint64(0x85EBCA6B)))
    lo = _h32(hi ^ _h32(u ^ np.uint64(0xC2B2AE35)))
    return (hi << np.uint64(32)) | lo


@numba.njit(cache=True)
def _sort_run(idx, a, b, base):
    # Reorder idx[a:b] (one run of tied inputs, ascending index) by ascending tie priority
    # (stable: equal priorities keep ascending index). Insertion sort for short runs, else LSD
    # radix on the 64-bit priorities.
    m = b - a
    pr = np.empty(m, dtype=np.uint64)
    seg = np.empty(m, dtype=np.int64)
    for t in range(m):
        seg[t] = idx[a + t]
        pr[t] = _tie_priority(base, seg[t])
    if m <= 32:
        for t in range(1, m):
            kp = pr[t]
            ks = seg[t]
            u = t - 1
            while u >= 0 and pr[u] > kp:
                pr[u + 1] = pr[u]
                seg[u + 1] = seg[u]
                u -= 1
            pr[u + 1] = kp
            seg[u + 1] = ks
        for t in range(m):
            idx[a + t] = seg[t]
        return
    o = np.empty(m, dtype=np.int64)
    tmp = np.empty(m, dtype=np.int64)
    _radix_argsort(pr, o, tmp)
    for t in range(m):
        idx[a + t] = seg[o[t]]


@numba.njit(cache=True)
def _break_ties(keys, idx, base, lo, hi):
    # idx: a stable ascending argsort of keys (ties by ascending index). Reorder every run of
    # equal keys that overlaps positions [lo, hi) by ascending tie priority of stream ``base``.
    p = idx.shape[0]
    a = 0
    while a < p:
        b = a + 1
        while b < p and keys[idx[b]] == keys[idx[a]]:
            b += 1
        if b - a > 1 and b > lo and a < hi:
            _sort_run(idx, a, b, base)
        a = b


@numba.njit(cache=True, parallel=True)
def _rank_order_nb(values, ties, seed, ids):
    # values: (N, P) float -> (N, P) int64, stable descending argsort per row; with ``ties`` the
    # runs of equal values are then ordered by the tie priorities of (seed, ids[i]).
    n, p = values.shape
    order = np.empty((n, p), dtype=np.int64)
    for i in numba.prange(n):
        keys = np.empty(p, dtype=np.uint64)
        tmp = np.empty(p, dtype=np.int64)
        _sort_keys(values[i], True, keys)
        _radix_argsort(keys, order[i], tmp)
        if ties:
            _break_ties(keys, order[i], _tie_base(seed, ids[i]), 0, p)
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


def _h32_np(x: np.ndarray) -> np.ndarray:
    m = np.uint64(0xFFFFFFFF)
    x = x & m
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & m
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & m
    return x ^ (x >> np.uint64(16))


def check_ties(tie_seed, ids, n: int):
    """Validate ``tie_seed`` (None or a non-negative int) and ``ids`` (None or ``n`` non-negative
    ints) and return ``(tie_seed, ids as int64 (n,))``."""
    if tie_seed is not None:
        tie_seed = check_seed(tie_seed, "tie_seed")
    if ids is None:
        return tie_seed, np.arange(n, dtype=np.int64)
    a = np.asarray(ids)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer) or (a < 0).any():
        raise ValueError(f"ids must be {n} non-negative ints (one image id per map), got "
                         f"{a.dtype} array of shape {a.shape}" + (" with negative values" if
                                                                   a.shape == (n,) and (a < 0).any() else ""))
    return tie_seed, np.ascontiguousarray(a, dtype=np.int64)


def tie_priorities(n: int, p: int, tie_seed: int = TIE_SEED, ids=None) -> np.ndarray:
    """``(n, p)`` uint64 tie priorities (numpy; the kernels compute the same values inline).

    With ``h`` the 32-bit hash "lowbias32" (C. Wellons) and 64-bit values split in 32-bit halves
    ``lo``/``hi``: the image key is ``k = h(h(h(h(lo(s) ^ 0x9E3779B9) ^ hi(s)) ^ lo(d)) ^ hi(d))``
    for ``s = tie_seed`` and image id ``d = ids[i]`` (default ``i``); input ``j`` gets
    ``a = h(k ^ h(j ^ 0x85EBCA6B))`` and ``b = h(a ^ h(j ^ 0xC2B2AE35))``, priority
    ``a * 2**32 + b``. Every product stays below 2**64 (no overflow, jitted or not). Among tied
    inputs the lower priority ranks first.
    """
    for v, nm in ((n, "n"), (p, "p")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm} must be a positive int, got {v!r}")
    tie_seed, d = check_ties(tie_seed, ids, int(n))
    if tie_seed is None:
        raise ValueError("tie_priorities needs an int tie_seed, got None")
    h, lo, sh = _h32_np, np.uint64(0xFFFFFFFF), np.uint64(32)
    s = np.array([tie_seed], dtype=np.uint64)
    d = d.astype(np.uint64)
    k = h(h(h(h((s & lo) ^ np.uint64(0x9E3779B9)) ^ (s >> sh)) ^ (d & lo)) ^ (d >> sh))[:, None]
    j = np.arange(int(p), dtype=np.uint64)[None, :]
    a = h(k ^ h(j ^ np.uint64(0x85EBCA6B)))
    b = h(a ^ h(j ^ np.uint64(0xC2B2AE35)))
    return (a << sh) | b


def rank_order_ref(attributions, granularity: str = "pixel", *, tie_seed: int | None = TIE_SEED,
                   ids=None) -> np.ndarray:
    """Plain numpy reference of :func:`rank_order`: ``np.lexsort`` by (negated value, tie
    priority), or a stable argsort of the negated values when ``tie_seed`` is None."""
    v = flatten_for_ranking(attributions, granularity)
    tie_seed, ids = check_ties(tie_seed, ids, v.shape[0])
    if tie_seed is None:
        return np.argsort(-v, axis=1, kind="stable").astype(np.int64)
    pr = tie_priorities(v.shape[0], v.shape[1], tie_seed, ids)
    return np.lexsort((pr, -v), axis=1).astype(np.int64)


def rank_order(attributions, granularity: str = "pixel", *, tie_seed: int | None = TIE_SEED,
               ids=None) -> np.ndarray:
    """Ranking order per image: ``order[n, i]`` is the flat index of the i-th most important input.

    ``attributions``: ``(N, H, W)`` / ``(N, 1, H, W)`` for ``granularity="pixel"`` (P = H*W), or
    ``(N, C, H, W)`` for ``"element"`` (P = C*H*W); any real dtype, no NaN.
    Returns an ``(N, P)`` int64 array; descending values, exact ties in the seeded random order
    of (``tie_seed``, ``ids[n]``) (module doc; ``tie_seed=None``: ascending flat index).
    """
    v = flatten_for_ranking(attributions, granularity)
    tie_seed, ids = check_ties(tie_seed, ids, v.shape[0])
    return _rank_order_nb(v, tie_seed is not None, 0 if tie_seed is None else tie_seed, ids)


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
