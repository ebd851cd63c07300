"""Region perturbation (Samek et al. 2017), pixel flipping and insertion/deletion, step by step.

Contract:

* Regions are the non-overlapping ``r x r`` tiles of the ``H x W`` grid, numbered row-major over
  the tile grid ``(ceil(H/r), ceil(W/r))``: region ``g`` covers rows ``(g // nW)*r`` to
  ``min(H, (g // nW)*r + r)`` and the matching columns.  When H or W is not divisible by r the
  last tile row/column is **partial** (fewer pixels); its relevance is still the plain **sum** over
  the pixels it has (the paper's "summed relevance"), so partial tiles tend to rank lower.
  ``r = 1`` is single-pixel flipping.
* ``order="morf"``: descending region sum, ties by ascending region index.  ``order="lerf"`` is
  exactly the MoRF order reversed (so LeRF ties go by descending region index).
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

__all__ = [
    "region_sums",
    "region_sums_ref",
    "region_order",
    "region_order_ref",
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


@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _region_order_nb(sums, lerf):
    # sums: (N, R) -> (N, R) int64 order, stable descending; reversed for LeRF.
    n, p = sums.shape
    order = np.empty((n, p), dtype=np.int64)
    for i in range(n):
        keys = np.empty(p, dtype=np.float64)
        for j in range(p):
            keys[j] = -sums[i, j]
        o = np.argsort(keys, kind="mergesort")
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


def region_order_ref(attributions, r: int, order: str = "morf") -> np.ndarray:
    """Numpy reference of :func:`region_order`."""
    check_choice(order, "order", ORDERS)
    s = region_sums_ref(attributions, r).reshape(np.shape(attributions)[0], -1)
    o = np.argsort(-s, axis=1, kind="stable")
    return o[:, ::-1].copy() if order == "lerf" else o


def region_order(attributions, r: int, order: str = "morf") -> np.ndarray:
    """Order of the regions per image, ``(N, R)`` int64 row-major region indices.

    "morf": descending summed relevance, ties by ascending region index; "lerf": that reversed.
    """
    check_choice(order, "order", ORDERS)
    s = region_sums(attributions, r)
    return _region_order_nb(s.reshape(s.shape[0], -1), order == "lerf")


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
