"""Region perturbation (Samek et al. 2017), pixel flipping and insertion/deletion, step by step.

Contract:

* Regions are the non-overlapping ``r x r`` tiles of the ``H x W`` grid, numbered row-major over
  the tile grid ``(ceil(H/r), ceil(W/r))``: region ``g`` covers rows ``(g // nW)*r`` to
  ``min(H, (g // nW)*r + r)`` and the matching columns.  When H or W is not divisible by r the
  last tile row/column is **partial** (fewer pixels); its relevance is still the plain **sum** over
  the pixels it has (the paper's "summed relevance"), so partial tiles tend to rank lower.
  ``r = 1`` is single-pixel flipping.
* ``order="morf"``: descending region sum, exact ties in the seeded random order of
  ``(tie_seed, image id)`` over region indices (``kernels.ranking``; ``tie_seed=None``: ascending
  region index).  ``order="lerf"`` is exactly the MoRF order reversed.
* A perturbation step copies the next ``regions_per_step`` regions of the order from a *source*
  into the current images, in place: for ``mode="deletion"`` the source is the fill (uniform
  noise from :func:`uniform_fill`, a constant, or any ``(N, C, H, W)`` array) and the start is the
  original; for ``mode="insertion"`` the start is the substrate (e.g. a blurred copy, passed as
  ``fill``) and the source is the original, so original pixels are restored.
* Attributions are ``(N, H, W)`` or ``(N, 1, H, W)`` (channels aggregated by the caller), no NaN.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._validate import as_array, check_choice, check_seed
from .ranking import TIE_SEED, check_ties, tie_priorities

__all__ = [
    "region_sums",
    "region_sums_ref",
    "region_order",
    "region_order_ref",
    "top_region",
    "uniform_fill",
    "perturb_regions",
    "perturb_regions_ref",
    "perturbation_steps",
    "perturbation_steps_ref",
]

ORDERS = ("morf", "lerf")
MODES = ("deletion", "insertion")


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _region_sums_nb(a, r):
    n, h, w = a.shape
    nh = (h + r - 1) // r
    nw = (w + r - 1) // r
    out = np.zeros((n, nh, nw), dtype=np.float64)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                out[i, y // r, x // r] += a[i, y, x]
    return out


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


@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _region_order_nb(sums, lerf, ties, seed, ids):
    # sums: (N, R) -> (N, R) int64 order, stable descending, runs of equal sums ordered by the
    # tie priorities of (seed, ids[i]) when ``ties``; reversed for LeRF.
    n, p = sums.shape
    order = np.empty((n, p), dtype=np.int64)
    for i in range(n):
        keys = np.empty(p, dtype=np.float64)
        for j in range(p):
            keys[j] = -sums[i, j]
        o = np.argsort(keys, kind="mergesort")
        if ties:
            _break_ties(keys, o, _tie_base(seed, ids[i]), 0, p)
        for j in range(p):
            order[i, j] = o[p - 1 - j] if lerf else o[j]
    return order


@numba.njit(cache=True, parallel=True)
def _perturb_regions_nb(x, source, order, r, start, stop):
    # Copy regions order[i, start:stop] of source into x, in place.  (N, C, H, W) both.
    n, c, h, w = x.shape
    nw = (w + r - 1) // r
    for i in numba.prange(n):
        for j in range(start, stop):
            g = order[i, j]
            y0 = (g // nw) * r
            x0 = (g % nw) * r
            y1 = min(h, y0 + r)
            x1 = min(w, x0 + r)
            for ch in range(c):
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        x[i, ch, y, xx] = source[i, ch, y, xx]


# ----------------------------------------------------------------------------- checks
def _check_attr(attributions):
    a = as_array(attributions, "attributions", ndim=(3, 4))
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"attributions must be (N, H, W) or (N, 1, H, W), got {a.shape}: aggregate channels first")
        a = a[:, 0]
    return np.ascontiguousarray(a, dtype=np.float64)


def _check_r(r, h, w):
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"r (region size) must be a positive int, got {r!r}")
    if r > max(h, w):
        raise ValueError(f"r={r} is larger than the image ({h} x {w})")
    return int(r)


def _n_regions(h, w, r):
    return ((h + r - 1) // r) * ((w + r - 1) // r)


def _check_images(images, name="images"):
    return as_array(images, name, ndim=4, dtypes=(np.float32, np.float64))


def _full_like(fill, x, name="fill"):
    """Broadcast a scalar, a (C,) vector or an (N, C, H, W) array to x's shape and dtype."""
    f = np.asarray(fill)
    if f.ndim == 1:
        f = f[None, :, None, None]
    try:
        full = np.broadcast_to(f, x.shape)
    except ValueError:
        raise ValueError(f"{name} must be a scalar, a (C,) vector or an array of shape {x.shape}, got {np.shape(fill)}") from None
    if np.issubdtype(full.dtype, np.floating) and np.isnan(full).any():
        raise ValueError(f"{name} contains NaN; NaN is not allowed")
    return np.ascontiguousarray(full, dtype=x.dtype)


# ----------------------------------------------------------------------------- public
def region_sums_ref(attributions, r: int) -> np.ndarray:
    """Numpy reference of :func:`region_sums`: zero-pad to a multiple of r, reshape, sum."""
    a = _check_attr(attributions)
    n, h, w = a.shape
    r = _check_r(r, h, w)
    nh, nw = -(-h // r), -(-w // r)
    pad = np.zeros((n, nh * r, nw * r))
    pad[:, :h, :w] = a
    return pad.reshape(n, nh, r, nw, r).sum(axis=(2, 4))


def region_sums(attributions, r: int) -> np.ndarray:
    """Summed relevance of each ``r x r`` region: ``(N, ceil(H/r), ceil(W/r))`` float64.

    Border regions are partial when r does not divide H or W (summed over the pixels they have).
    """
    a = _check_attr(attributions)
    return _region_sums_nb(a, _check_r(r, a.shape[1], a.shape[2]))


def region_order_ref(attributions, r: int, order: str = "morf", *, tie_seed: int | None = TIE_SEED,
                     ids=None) -> np.ndarray:
    """Numpy reference of :func:`region_order` (``np.lexsort`` by negated sum, tie priority)."""
    check_choice(order, "order", ORDERS)
    s = region_sums_ref(attributions, r).reshape(np.shape(attributions)[0], -1)
    tie_seed, ids = check_ties(tie_seed, ids, s.shape[0])
    if tie_seed is None:
        o = np.argsort(-s, axis=1, kind="stable")
    else:
        o = np.lexsort((tie_priorities(s.shape[0], s.shape[1], tie_seed, ids), -s), axis=1)
    return o[:, ::-1].copy() if order == "lerf" else o


def region_order(attributions, r: int, order: str = "morf", *, tie_seed: int | None = TIE_SEED,
                 ids=None) -> np.ndarray:
    """Order of the regions per image, ``(N, R)`` int64 row-major region indices.

    "morf": descending summed relevance, exact ties in the seeded random order of
    (``tie_seed``, ``ids[n]``) over region indices (``kernels.ranking``; ``tie_seed=None``:
    ascending region index); "lerf": that order reversed.
    """
    check_choice(order, "order", ORDERS)
    s = region_sums(attributions, r)
    tie_seed, ids = check_ties(tie_seed, ids, s.shape[0])
    return _region_order_nb(s.reshape(s.shape[0], -1), order == "lerf", tie_seed is not None,
                            0 if tie_seed is None else tie_seed, ids)


def top_region(sums, tie_seed: int | None = TIE_SEED, ids=None) -> np.ndarray:
    """``(N,)`` int64: per row of ``sums`` ``(N, R)`` the index of the largest value, exact ties
    to the lowest tie priority of (``tie_seed``, ``ids[n]``) -- the first region of
    :func:`region_order`'s MoRF order for the same sums (``tie_seed=None``: the first maximum).
    ``-inf`` marks excluded regions (selectivity's removed patches); NaN is rejected."""
    s = as_array(sums, "sums", ndim=2)
    tie_seed, ids = check_ties(tie_seed, ids, s.shape[0])
    if tie_seed is None:
        return np.argmax(s, axis=1).astype(np.int64)
    best = s == s.max(axis=1, keepdims=True)
    pr = tie_priorities(s.shape[0], s.shape[1], tie_seed, ids)
    return np.where(best, pr, np.uint64(2**64 - 1)).argmin(axis=1).astype(np.int64)


def uniform_fill(shape, low: float = 0.0, high: float = 1.0, seed: int = 0, ids=None, dtype=np.float32) -> np.ndarray:
    """Pre-drawn uniform noise images ``(N, C, H, W)`` in ``[low, high)``.

    Image i is drawn from ``np.random.default_rng([seed, ids[i]])`` (``ids`` defaults to
    ``0..N-1``): deterministic, and the same for a given dataset index whatever batch it is in.
    """
    if len(shape) != 4:
        raise ValueError(f"shape must be (N, C, H, W), got {shape!r}")
    n = int(shape[0])
    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"need finite low <= high, got low={low!r}, high={high!r}")
    seed = check_seed(seed)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
        raise ValueError(f"ids must be {n} non-negative ints, got {ids!r}")
    out = np.empty(tuple(int(s) for s in shape), dtype=dtype)
    for i in range(n):
        out[i] = np.random.default_rng([seed, int(ids[i])]).uniform(lo, hi, size=out.shape[1:])
    return out


def perturb_regions_ref(x, source, order, r: int, start: int, stop: int) -> None:
    """Numpy reference of :func:`perturb_regions` (region mask + np.where), in place."""
    n, c, h, w = x.shape
    nw = -(-w // r)
    rid = (np.arange(h)[:, None] // r) * nw + np.arange(w)[None, :] // r  # (H, W) region id
    chosen = np.zeros((n, _n_regions(h, w, r)), dtype=bool)
    np.put_along_axis(chosen, np.asarray(order)[:, start:stop], True, axis=1)
    m = np.take_along_axis(chosen, np.broadcast_to(rid.ravel(), (n, h * w)), axis=1).reshape(n, 1, h, w)
    x[...] = np.where(m, source, x)


def perturb_regions(x, source, order, r: int, start: int, stop: int) -> None:
    """In place: copy regions ``order[:, start:stop]`` of ``source`` into ``x``.

    ``x``, ``source``: C-contiguous ``(N, C, H, W)`` arrays of the same shape and dtype (``x`` is
    modified, so it is not copied: a non-contiguous ``x`` is an error); ``order``: ``(N, R)``.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4 or not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("x must be a writeable C-contiguous (N, C, H, W) numpy array (it is modified in place)")
    src = _full_like(source, x, "source")
    o = np.ascontiguousarray(order, dtype=np.int64)
    n, c, h, w = x.shape
    r = _check_r(r, h, w)
    R = _n_regions(h, w, r)
    if o.shape != (n, R) or (o < 0).any() or (o >= R).any():
        raise ValueError(f"order must be (N, R) = ({n}, {R}) region indices in [0, {R}), got shape {o.shape}")
    if not 0 <= start <= stop <= R:
        raise ValueError(f"need 0 <= start <= stop <= {R}, got start={start}, stop={stop}")
    _perturb_regions_nb(x, src, o, r, int(start), int(stop))


def _setup(images, attributions, r, fill, order, mode, regions_per_step, n_steps):
    check_choice(order, "order", ORDERS)
    check_choice(mode, "mode", MODES)
    x = _check_images(images)
    a = _check_attr(attributions)
    n, c, h, w = x.shape
    if a.shape != (n, h, w):
        raise ValueError(f"attributions must be (N, H, W) = {(n, h, w)} to match images {x.shape}, got {np.shape(attributions)}")
    r = _check_r(r, h, w)
    R = _n_regions(h, w, r)
    if isinstance(regions_per_step, bool) or not isinstance(regions_per_step, (int, np.integer)) or regions_per_step < 1:
        raise ValueError(f"regions_per_step must be a positive int, got {regions_per_step!r}")
    g = int(regions_per_step)
    max_steps = -(-R // g)
    if n_steps is None:
        n_steps = max_steps
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or not 0 <= n_steps <= max_steps:
        raise ValueError(f"n_steps must be an int in [0, {max_steps}] (R={R} regions, {g} per step), got {n_steps!r}")
    f = _full_like(fill, x)
    start, source = (x.copy(), f) if mode == "deletion" else (f.copy(), x)
    return a, r, R, g, int(n_steps), start, source


def perturbation_steps_ref(images, attributions, r, fill, order="morf", mode="deletion", regions_per_step=1, n_steps=None):
    """Numpy reference of :func:`perturbation_steps` (yields copies)."""
    a, r, R, g, n_steps, cur, source = _setup(images, attributions, r, fill, order, mode, regions_per_step, n_steps)
    o = region_order_ref(a, r, order)
    yield 0, cur.copy()
    for k in range(1, n_steps + 1):
        perturb_regions_ref(cur, source, o, r, (k - 1) * g, min(R, k * g))
        yield k, cur.copy()


def perturbation_steps(images, attributions, r: int, fill, order: str = "morf", mode: str = "deletion",
                       regions_per_step: int = 1, n_steps: int | None = None):
    """Generator of ``(k, x_k)`` for k = 0..n_steps: the batch perturbed up to step k.

    ``images`` ``(N, C, H, W)`` float32/float64; ``attributions`` ``(N, H, W)``; ``r`` region size;
    ``fill``: the deletion fill (scalar, ``(C,)``, or ``(N, C, H, W)`` e.g. :func:`uniform_fill`)
    or, for ``mode="insertion"``, the substrate.  Step k perturbs regions
    ``order[(k-1)*g : k*g]`` (``g = regions_per_step``) of every image; ``x_0`` is the start.
    ``n_steps`` defaults to ``ceil(R / g)`` (all regions).  Memory: one working batch; **the
    same array is yielded every step and modified in place afterwards** (copy it to keep it).
    """
    a, r, R, g, n_steps, cur, source = _setup(images, attributions, r, fill, order, mode, regions_per_step, n_steps)
    o = region_order(a, r, order)
    yield 0, cur
    for k in range(1, n_steps + 1):
        _perturb_regions_nb(cur, source, o, r, (k - 1) * g, min(R, k * g))
        yield k, cur
