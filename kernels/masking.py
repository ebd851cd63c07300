"""ROAR / KAR masking: replace the top-t (remove) or all but the top-t (keep) inputs of each image.

Contract:

* ``k = floor(t * P)`` inputs per image are "top" (see :func:`fraction_to_count` for the rounding
  of ``t * P``).  ``mode="remove"`` (ROAR) replaces exactly those k inputs; ``mode="keep"`` (KAR)
  replaces the other ``P - k``.  t = 0 with "remove" and t = 1 with "keep" are the identity.
* ``granularity="pixel"``: P = H*W, replacing a pixel replaces all C channels of it.
  ``granularity="element"``: P = C*H*W, each entry ``e = c*H*W + h*W + w`` is replaced alone.
* Replaced inputs take the per-channel ``fill`` value (shape (C,), or a scalar for all channels),
  e.g. the per-channel dataset mean.
* The order of the top inputs comes from :mod:`kernels.ranking` (descending, exact ties in the
  seeded random order of ``(tie_seed, image id)``; ``tie_seed=None``: ascending flat index);
  :func:`rank_and_mask` selects exactly the same k inputs as ``rank_order`` + :func:`mask_images`,
  in one parallel pass.
* Outputs are new arrays with the dtype of ``images`` (float32 or float64); inputs are unchanged.
"""
from __future__ import annotations

import numba
import numpy as np

from ._validate import as_array, check_choice, check_seed, fraction_to_count
from .ranking import TIE_SEED, _check_order, check_ties, flatten_for_ranking, rank_order_ref

__all__ = [
    "fraction_to_count",
    "random_order",
    "mask_from_order",
    "mask_from_order_ref",
    "mask_images",
    "mask_images_ref",
    "rank_and_mask",
    "rank_and_mask_ref",
]

MODES = ("remove", "keep")


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _mask_from_order_nb(order, k, keep):
    n, p = order.shape
    out = np.empty((n, p), dtype=np.bool_)
    for i in range(n):
        for j in range(p):
            out[i, order[i, j]] = (j >= k) if keep else (j < k)
    return out


@numba.njit(cache=True, parallel=True)
def _mask_images_nb(images, order, k, keep, fill, element, out):
    # images/out: (N, C, HW); order: (N, P) with P = HW (pixel) or C*HW (element).
    n, c, hw = images.shape
    p = order.shape[1]
    for i in numba.prange(n):
        replaced = np.zeros(p, dtype=np.bool_)
        lo = k if keep else 0
        hi = p if keep else k
        for j in range(lo, hi):
            replaced[order[i, j]] = True
        _write_masked(images, out, i, replaced, fill, element)


@numba.njit(cache=True)
def _write_masked(images, out, i, replaced, fill, element):
    n, c, hw = images.shape
    for ch in range(c):
        off = ch * hw if element else 0
        f = fill[ch]
        for q in range(hw):
            out[i, ch, q] = f if replaced[off + q] else images[i, ch, q]


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


@numba.njit(cache=True)
def _top_k_flags(values, k, flags, ties, base):
    # flags[j] = True for the first k inputs of the descending order; ties by the tie priorities
    # of ``base`` (``ties``) or by ascending index. Only the run of equal values that straddles
    # position k decides anything, so only that run is reordered.
    p = values.shape[0]
    if k <= 0:
        flags[:] = False
        return
    if k >= p:
        flags[:] = True
        return
    keys = np.empty(p, dtype=np.uint64)
    idx = np.empty(p, dtype=np.int64)
    tmp = np.empty(p, dtype=np.int64)
    _sort_keys(values, True, keys)
    _radix_argsort(keys, idx, tmp)
    if ties:
        _break_ties(keys, idx, base, k, k)
    flags[:] = False
    for j in range(k):
        flags[idx[j]] = True


@numba.njit(cache=True, parallel=True)
def _rank_and_mask_nb(images, values, k, keep, fill, element, out, ties, seed, ids):
    n = images.shape[0]
    p = values.shape[1]
    for i in numba.prange(n):
        flags = np.empty(p, dtype=np.bool_)
        _top_k_flags(values[i], k, flags, ties, _tie_base(seed, ids[i]))
        if keep:
            for j in range(p):
                flags[j] = not flags[j]
        _write_masked(images, out, i, flags, fill, element)


# ----------------------------------------------------------------------------- helpers
def random_order(n: int, p: int, seed: int) -> np.ndarray:
    """Seeded random ranking (the ROAR random control): ``(n, p)`` int64, each row a permutation.

    Row i is the i-th row drawn by ``np.random.default_rng(seed).permuted(..., axis=1)``:
    reproducible under ``seed``, different across seeds, and the first rows do not depend on n.
    """
    for v, nm in ((n, "n"), (p, "p")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm} must be a positive int, got {v!r}")
    rng = np.random.default_rng(check_seed(seed))
    base = np.broadcast_to(np.arange(p, dtype=np.int64), (int(n), int(p)))
    return rng.permuted(base, axis=1)


def _check_images(images):
    return as_array(images, "images", ndim=4, dtypes=(np.float32, np.float64))


def _check_fill(fill, c: int) -> np.ndarray:
    f = np.asarray(fill, dtype=np.float64)
    if f.ndim == 0:
        f = np.full(c, float(f))
    if f.shape != (c,):
        raise ValueError(f"fill must be a scalar or have shape ({c},) (one value per channel), got {f.shape}")
    if np.isnan(f).any():
        raise ValueError(f"fill contains NaN: {f.tolist()}; NaN is not allowed")
    return np.ascontiguousarray(f)


def _p_for(images: np.ndarray, granularity: str) -> int:
    n, c, h, w = images.shape
    return h * w if granularity == "pixel" else c * h * w


def _check_order_for(order, images, granularity):
    o = _check_order(order)
    p = _p_for(images, granularity)
    if o.shape != (images.shape[0], p):
        raise ValueError(
            f"order must have shape (N, P) = ({images.shape[0]}, {p}) for granularity={granularity!r} "
            f"and images of shape {images.shape}, got {o.shape}"
        )
    return o


# ----------------------------------------------------------------------------- mask only
def mask_from_order_ref(order, t: float, mode: str = "remove") -> np.ndarray:
    """Plain numpy reference of :func:`mask_from_order`."""
    check_choice(mode, "mode", MODES)
    o = _check_order(order)
    k = fraction_to_count(t, o.shape[1])
    top = np.zeros(o.shape, dtype=bool)
    np.put_along_axis(top, o[:, :k], True, axis=1)
    return ~top if mode == "keep" else top


def mask_from_order(order, t: float, mode: str = "remove") -> np.ndarray:
    """Boolean ``(N, P)`` mask, True where an input is replaced.

    ``order``: ``(N, P)`` rows of permutations (most important first).  "remove": True on
    ``order[:, :k]``; "keep": True on ``order[:, k:]``; ``k = floor(t * P)``.
    """
    check_choice(mode, "mode", MODES)
    o = _check_order(order)
    k = fraction_to_count(t, o.shape[1])
    return _mask_from_order_nb(o, k, mode == "keep")


# ----------------------------------------------------------------------------- images
def mask_images_ref(images, order, t: float, fill, mode: str = "remove", granularity: str = "pixel") -> np.ndarray:
    """Plain numpy reference of :func:`mask_images` (put_along_axis + np.where)."""
    check_choice(granularity, "granularity", ("pixel", "element"))
    check_choice(mode, "mode", MODES)
    x = _check_images(images)
    o = _check_order_for(order, x, granularity)
    return _mask_images_np(x, o, fraction_to_count(t, o.shape[1]), _check_fill(fill, x.shape[1]), mode, granularity)


def _mask_images_np(x, order, k, fill, mode, granularity):
    n, c, h, w = x.shape
    top = np.zeros(order.shape, dtype=bool)
    np.put_along_axis(top, order[:, :k], True, axis=1)
    replaced = ~top if mode == "keep" else top
    f = fill.astype(x.dtype)[None, :, None]
    if granularity == "pixel":
        rep = replaced[:, None, :]
    else:
        rep = replaced.reshape(n, c, h * w)
    return np.where(rep, f, x.reshape(n, c, h * w)).reshape(x.shape)


def mask_images(images, order, t: float, fill, mode: str = "remove", granularity: str = "pixel") -> np.ndarray:
    """Replace inputs of ``images`` ``(N, C, H, W)`` following a given ranking ``order``.

    ``order``: ``(N, P)`` int permutations, most important first (:func:`kernels.rank_order` or
    :func:`random_order`), P = H*W (pixel) or C*H*W (element).  Exactly ``k = floor(t * P)``
    inputs are "top"; "remove" replaces them, "keep" replaces the rest, with ``fill`` per channel.
    Returns a new array of the dtype of ``images``.
    """
    check_choice(mode, "mode", MODES)
    check_choice(granularity, "granularity", ("pixel", "element"))
    x = _check_images(images)
    n, c, h, w = x.shape
    o = _check_order_for(order, x, granularity)
    k = fraction_to_count(t, o.shape[1])
    f = _check_fill(fill, c)
    out = np.empty((n, c, h * w), dtype=x.dtype)
    _mask_images_nb(x.reshape(n, c, h * w), o, k, mode == "keep", f, granularity == "element", out)
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------- rank + mask
def _check_attr_for(attributions, x, granularity):
    v = flatten_for_ranking(attributions, granularity)
    p = _p_for(x, granularity)
    if v.shape != (x.shape[0], p):
        raise ValueError(
            f"attributions do not fit images of shape {x.shape} for granularity={granularity!r}: "
            f"need N={x.shape[0]} maps of {p} values, got {np.shape(attributions)}"
        )
    return v


def rank_and_mask_ref(images, attributions, t: float, fill, mode: str = "remove", granularity: str = "pixel",
                      *, tie_seed: int | None = TIE_SEED, ids=None):
    """Plain numpy reference of :func:`rank_and_mask`: ``rank_order_ref``, then fancy indexing."""
    check_choice(mode, "mode", MODES)
    x = _check_images(images)
    _check_attr_for(attributions, x, granularity)
    order = rank_order_ref(attributions, granularity, tie_seed=tie_seed, ids=ids)
    k = fraction_to_count(t, order.shape[1])
    return _mask_images_np(x, order, k, _check_fill(fill, x.shape[1]), mode, granularity)


def rank_and_mask(images, attributions, t: float, fill, mode: str = "remove", granularity: str = "pixel",
                  *, tie_seed: int | None = TIE_SEED, ids=None) -> np.ndarray:
    """Rank ``attributions`` and mask ``images`` in one parallel pass (ROAR/KAR for a dataset).

    ``images``: ``(N, C, H, W)`` float32/float64.  ``attributions``: ``(N, H, W)`` or
    ``(N, 1, H, W)`` for "pixel", ``(N, C, H, W)`` for "element"; no NaN.  Selects the same
    ``k = floor(t * P)`` top inputs as ``mask_images(images, rank_order(attributions, tie_seed=,
    ids=), ...)``: descending values, exact ties in the seeded random order of
    (``tie_seed``, ``ids[n]``) (``kernels.ranking``; ``None``: ascending flat index); a stable
    radix sort per image, then only the tied run across position k is reordered.  Returns a new
    array of the dtype of ``images``.
    """
    check_choice(mode, "mode", MODES)
    check_choice(granularity, "granularity", ("pixel", "element"))
    x = _check_images(images)
    n, c, h, w = x.shape
    v = _check_attr_for(attributions, x, granularity)
    tie_seed, ids = check_ties(tie_seed, ids, n)
    k = fraction_to_count(t, v.shape[1])
    f = _check_fill(fill, c)
    out = np.empty((n, c, h * w), dtype=x.dtype)
    _rank_and_mask_nb(x.reshape(n, c, h * w), v, k, mode == "keep", f, granularity == "element", out,
                      tie_seed is not None, 0 if tie_seed is None else tie_seed, ids)
    return out.reshape(x.shape)
