"""Noisy linear imputation (ROAD, Rong et al. 2022): fill removed pixels from their neighbours.

Contract of :func:`impute`:

* Each removed pixel i (``mask[n, h, w] == True``) satisfies ``x_i = sum_j w_j x_j / sum_j w_j``
  over its 8 neighbours j *inside the image* (``w = 1/6`` for the 4 direct neighbours, ``1/12``
  for the 4 diagonals; neighbours outside the image are dropped and the rest renormalised).
  Known neighbours contribute their values; removed neighbours are unknowns of the same linear
  system.  Multiplied by ``sum_j w_j`` the system is symmetric positive definite whenever at least
  one pixel of the image is kept (every 8-connected hole then touches a known pixel), one matrix
  per image shared by all channels.
* Solved **exactly** (up to float64 round-off) with an envelope (skyline) Cholesky factorisation
  of that matrix, unknowns numbered in row-major pixel order; relative error against
  ``scipy.sparse.linalg.spsolve`` is ~1e-12 before the cast to the output dtype.
* Then Gaussian noise ``noise_std * z`` is added to the imputed pixels only (kept pixels are
  returned bit-for-bit).  ``z`` is a counter-based standard normal (one splitmix64 hash, Box-Muller on its two 32-bit
  halves, so ``|z| <= 6.7``) of
  ``(seed, ids[n], c*H*W + h*W + w)``: deterministic, the same on any thread count, and
  independent of the batch an image is in when the caller passes dataset indices as ``ids``.
* All pixels removed: the system is singular (no known value).  Such an image is filled with
  ``fallback`` (scalar or one value per channel, default 0.0) plus the noise; documented choice.
* ``noise_std = 0`` gives the pure linear imputation: a constant image stays constant and a
  linear ramp is reproduced inside interior holes.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._validate import as_array, check_seed

__all__ = ["impute", "impute_ref", "normal_noise", "normal_noise_ref"]

# (drow, dcol, weight) of the 8 neighbours.
_NEIGHBOURS = (
    (-1, -1, 1.0 / 12), (-1, 0, 1.0 / 6), (-1, 1, 1.0 / 12),
    (0, -1, 1.0 / 6), (0, 1, 1.0 / 6),
    (1, -1, 1.0 / 12), (1, 0, 1.0 / 6), (1, 1, 1.0 / 12),
)
_DR = np.array([d[0] for d in _NEIGHBOURS], dtype=np.int64)
_DC = np.array([d[1] for d in _NEIGHBOURS], dtype=np.int64)
_W = np.array([d[2] for d in _NEIGHBOURS], dtype=np.float64)

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


# ----------------------------------------------------------------------------- noise
@numba.njit(cache=True)
def _splitmix64(z):
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _image_key(seed, image_id):
    return _splitmix64(_splitmix64(np.uint64(seed)) ^ np.uint64(image_id))


@numba.njit(cache=True)
def _normal(key, e):
    # Standard normal number e of the stream `key`: Box-Muller on the two 32-bit halves of one
    # splitmix64 hash (u1 in (0, 1], u2 in [0, 1); |z| <= 6.7).
    h = _splitmix64(key ^ np.uint64(e))
    u1 = (float(h >> np.uint64(32)) + 1.0) * (1.0 / 4294967296.0)
    u2 = float(h & np.uint64(0xFFFFFFFF)) * (1.0 / 4294967296.0)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _normal_noise_nb(ids, seed, size):
    n = ids.shape[0]
    out = np.empty((n, size), dtype=np.float64)
    for i in range(n):
        key = _image_key(seed, ids[i])
        for e in range(size):
            out[i, e] = _normal(key, e)
    return out


def _splitmix64_np(z):
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def normal_noise_ref(ids, seed: int, size: int) -> np.ndarray:
    """Numpy reference of :func:`normal_noise`."""
    ids = np.asarray(ids, dtype=np.uint64).reshape(-1, 1)
    with np.errstate(over="ignore"):
        key = _splitmix64_np(_splitmix64_np(np.uint64(seed) * np.ones_like(ids)) ^ ids)
        e = np.arange(size, dtype=np.uint64)[None, :]
        h = _splitmix64_np(key ^ e)
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 1.0) / 4294967296.0
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) / 4294967296.0
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def normal_noise(ids, seed: int, size: int) -> np.ndarray:
    """Counter-based standard normal numbers: ``(len(ids), size)`` float64.

    Row i depends only on ``(seed, ids[i])``; entry e only on ``(seed, ids[i], e)``.
    """
    ids = _check_ids(ids, None)
    return _normal_noise_nb(ids, check_seed(seed), int(size))


# ----------------------------------------------------------------------------- solver
@numba.njit(cache=True)
def _impute_one(x, removed, out, h, w, dr, dc, wt, noise_std, key, fallback):
    # x, out: (C, H*W) of one image; removed: (H*W,) bool.
    c = x.shape[0]
    hw = h * w
    for ch in range(c):
        for q in range(hw):
            out[ch, q] = x[ch, q]
    # unknown ids on a grid padded by one pixel: -2 outside the image, -1 known, else the id
    wp = w + 2
    uidp = np.full((h + 2) * wp, -2, dtype=np.int64)
    pix = np.empty(hw, dtype=np.int64)  # image index of unknown u
    ppix = np.empty(hw, dtype=np.int64)  # padded index of unknown u
    m = 0
    for y in range(h):
        for xx in range(w):
            q = y * w + xx
            qp = (y + 1) * wp + xx + 1
            if removed[q]:
                uidp[qp] = m
                pix[m] = q
                ppix[m] = qp
                m += 1
            else:
                uidp[qp] = -1
    if m == 0:
        return
    if m == hw:  # singular: nothing known; documented fallback
        for ch in range(c):
            for q in range(hw):
                out[ch, q] = fallback[ch] + noise_std * _normal(key, ch * hw + q)
        return
    offp = np.empty(8, dtype=np.int64)
    offq = np.empty(8, dtype=np.int64)
    for k in range(8):
        offp[k] = dr[k] * wp + dc[k]
        offq[k] = dr[k] * w + dc[k]
    # envelope: first[u] = smallest unknown neighbour id (or u); width b = max(u - first[u])
    first = np.empty(m, dtype=np.int64)
    b = 0
    for u in range(m):
        qp = ppix[u]
        f = u
        for k in range(8):
            v = uidp[qp + offp[k]]
            if v >= 0 and v < f:
                f = v
        first[u] = f
        if u - f > b:
            b = u - f
    # band storage, row u holds columns u-b..u: lb[u, b - u + k] = matrix entry (u, k)
    lb = np.zeros((m, b + 1), dtype=np.float64)
    rhs = np.zeros((m, c), dtype=np.float64)
    for u in range(m):
        qp = ppix[u]
        q = pix[u]
        diag = 0.0
        for k in range(8):
            v = uidp[qp + offp[k]]
            if v == -2:
                continue
            wk = wt[k]
            diag += wk
            if v == -1:
                qq = q + offq[k]
                for ch in range(c):
                    rhs[u, ch] += wk * x[ch, qq]
            elif v < u:
                lb[u, b - u + v] = -wk
        lb[u, b] = diag
    last = np.empty(m, dtype=np.int64)
    inv = np.empty(m, dtype=np.float64)
    _envelope_cholesky(lb, first, b, last, inv)
    _envelope_solve(lb, first, b, last, inv, rhs)
    for ch in range(c):
        for u in range(m):
            q = pix[u]
            val = rhs[u, ch]
            if noise_std != 0.0:
                val += noise_std * _normal(key, ch * hw + q)
            out[ch, q] = val


@numba.njit(cache=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def _envelope_cholesky(lb, first, b, last, inv):
    # In place A = L L^T.  Row i of lb holds columns i-b..i (lb[i, b-i+k] = L[i, k]); its
    # nonzeros start at column first[i] and fill-in stays inside this envelope.  Left-looking by
    # columns: the entries of column j (rows j+1..last[j]) are independent dot products, which
    # keeps the CPU busy instead of waiting on one long dependency chain.  Fills last[j] (the
    # last row whose envelope reaches column j) and inv[j] = 1 / L[j, j].  The dot products run
    # over the whole stored band (entries left of the envelope are exact zeros), which gives
    # data-independent trip counts; unsigned offsets skip numba's negative-index wraparound so
    # they vectorise.
    m = lb.shape[0]
    s1 = b + 1
    f = lb.ravel()
    for j in range(m):
        last[j] = j
    for i in range(m):
        if last[first[i]] < i:
            last[first[i]] = i
    for j in range(1, m):
        if last[j - 1] > last[j]:
            last[j] = last[j - 1]
    for j in range(m):
        bj = j * s1 + b - j
        k0 = j - b if j > b else 0
        s = 0.0
        pb = np.uint64(bj + k0)
        for t in range(np.uint64(j - k0)):
            s += f[pb + t] * f[pb + t]
        d = math.sqrt(f[bj + j] - s)
        f[bj + j] = d
        iv = 1.0 / d
        inv[j] = iv
        for i in range(j + 1, last[j] + 1):
            if first[i] > j:
                continue
            bi = i * s1 + b - i
            k0 = i - b if i > b else 0
            s = 0.0
            pa = np.uint64(bi + k0)
            pb = np.uint64(bj + k0)
            for t in range(np.uint64(j - k0)):
                s += f[pa + t] * f[pb + t]
            f[bi + j] = (f[bi + j] - s) * iv


@numba.njit(cache=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def _envelope_solve(lb, first, b, last, inv, y):
    # Solve L L^T X = Y in place for all columns of y (m, C) at once, both sweeps column
    # oriented (independent updates, no reduction chain).
    m, c = y.shape
    for j in range(m):
        yj = y[j]
        iv = inv[j]
        for ch in range(c):
            yj[ch] *= iv
        for i in range(j + 1, last[j] + 1):
            if first[i] > j:
                continue
            lij = lb[i, b - i + j]
            yi = y[i]
            for ch in range(c):
                yi[ch] -= lij * yj[ch]
    for i in range(m - 1, -1, -1):
        li = lb[i]
        oi = b - i
        yi = y[i]
        iv = inv[i]
        for ch in range(c):
            yi[ch] *= iv
        for k in range(first[i], i):
            lik = li[oi + k]
            yk = y[k]
            for ch in range(c):
                yk[ch] -= lik * yi[ch]


@numba.njit(cache=True, parallel=True)
def _impute_nb(images, mask, h, w, dr, dc, wt, noise_std, seed, ids, fallback, out):
    # images/out: (N, C, H*W); mask: (N, H*W) bool.
    n = images.shape[0]
    for i in numba.prange(n):
        key = _image_key(seed, ids[i])
        _impute_one(images[i], mask[i], out[i], h, w, dr, dc, wt, noise_std, key, fallback)


# ----------------------------------------------------------------------------- wrappers
def _check_ids(ids, n):
    if ids is None:
        return np.arange(n, dtype=np.int64)
    a = np.ascontiguousarray(np.asarray(ids))
    if a.ndim != 1 or (n is not None and a.shape[0] != n) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids must be a 1-d integer array of length N={n}, got shape {a.shape} dtype {a.dtype}")
    if (a < 0).any():
        raise ValueError(f"ids must be non-negative, got {a[a < 0][0]}")
    return a.astype(np.int64)


def _check_inputs(images, mask, noise_std, seed, fallback, ids):
    x = as_array(images, "images", ndim=4, dtypes=(np.float32, np.float64))
    mk = as_array(mask, "mask", ndim=3, dtypes=(np.bool_,))
    n, c, h, w = x.shape
    if mk.shape != (n, h, w):
        raise ValueError(f"mask must have shape (N, H, W) = {(n, h, w)} to match images {x.shape}, got {mk.shape}")
    try:
        std = float(noise_std)
    except (TypeError, ValueError):
        raise ValueError(f"noise_std must be a real number >= 0, got {noise_std!r}") from None
    if not math.isfinite(std) or std < 0:
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}")
    fb = np.asarray(fallback, dtype=np.float64)
    if fb.ndim == 0:
        fb = np.full(c, float(fb))
    if fb.shape != (c,) or not np.isfinite(fb).all():
        raise ValueError(f"fallback must be a finite scalar or have shape ({c},), got {np.asarray(fallback).tolist()!r}")
    return x, mk, std, check_seed(seed), np.ascontiguousarray(fb), _check_ids(ids, n)


def impute_ref(images, mask, noise_std: float = 0.01, seed: int = 0, fallback=0.0, ids=None) -> np.ndarray:
    """Reference: per image, build the sparse system with scipy.sparse and solve it with spsolve."""
    import scipy.sparse
    import scipy.sparse.linalg

    x, mk, std, seed, fb, ids = _check_inputs(images, mask, noise_std, seed, fallback, ids)
    n, c, h, w = x.shape
    hw = h * w
    out = x.reshape(n, c, hw).copy()
    noise = normal_noise_ref(ids, seed, c * hw).reshape(n, c, hw) if std != 0 else None
    for i in range(n):
        removed = mk[i].reshape(hw)
        m = int(removed.sum())
        if m == 0:
            continue
        if m == hw:
            vals = np.broadcast_to(fb[:, None], (c, hw)).astype(np.float64)
        else:
            uid = np.full(hw, -1, dtype=np.int64)
            uid[removed] = np.arange(m)
            q = np.flatnonzero(removed)
            r0, c0 = q // w, q % w
            diag = np.zeros(m)
            b = np.zeros((m, c))
            rows, cols, data = [], [], []
            img = x[i].reshape(c, hw).astype(np.float64)
            for dr, dc, wk in _NEIGHBOURS:
                rr, cc = r0 + dr, c0 + dc
                inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                diag[inside] += wk
                qq = np.where(inside, rr * w + cc, 0)
                known = inside & ~removed[qq]
                b[known] += wk * img[:, qq[known]].T
                unk = inside & removed[qq]
                rows.append(np.flatnonzero(unk))
                cols.append(uid[qq[unk]])
                data.append(np.full(int(unk.sum()), -wk))
            rows.append(np.arange(m))
            cols.append(np.arange(m))
            data.append(diag)
            a = scipy.sparse.csc_matrix(
                (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m)
            )
            sol = scipy.sparse.linalg.spsolve(a, b).reshape(m, c)
            vals = np.zeros((c, hw))
            vals[:, removed] = sol.T
        if noise is not None:
            vals = vals + std * noise[i]
        out[i][:, removed] = vals[:, removed]
    return out.reshape(x.shape)


def impute(images, mask, noise_std: float = 0.01, seed: int = 0, fallback=0.0, ids=None) -> np.ndarray:
    """Noisy linear imputation of the removed pixels (see module docstring for the contract).

    ``images``: ``(N, C, H, W)`` float32/float64, no NaN.  ``mask``: ``(N, H, W)`` bool, True =
    removed (all channels of that pixel are imputed).  ``noise_std`` >= 0 (0.01 as in ROAD),
    ``seed`` >= 0, ``fallback``: value(s) for images with every pixel removed, ``ids``: optional
    per-image stream ids (default ``0..N-1``) for batch-independent noise.
    Returns a new array of the dtype of ``images``; parallel over images.
    """
    x, mk, std, seed, fb, ids = _check_inputs(images, mask, noise_std, seed, fallback, ids)
    n, c, h, w = x.shape
    out = np.empty((n, c, h * w), dtype=x.dtype)
    _impute_nb(x.reshape(n, c, h * w), mk.reshape(n, h * w), h, w, _DR, _DC, _W, std, seed, ids, fb, out)
    return out.reshape(x.shape)
