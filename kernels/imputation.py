"""Noisy linear imputation (ROAD, Rong et al. 2022): fill removed pixels from their neighbours.

Contract of :func:`impute`:

* Each removed pixel i (``mask[n, h, w] == True``) satisfies ``x_i = sum_j w_j x_j / sum_j w_j``
  over its 8 neighbours j *inside the image* (``w = 1/6`` for the 4 direct neighbours, ``1/12``
  for the 4 diagonals; neighbours outside the image are dropped and the rest renormalised).
  Known neighbours contribute their values; removed neighbours are unknowns of the same linear
  system.  Multiplied by ``sum_j w_j`` the system is symmetric positive definite whenever at least
  one pixel of the image is kept (every 8-connected hole then touches a known pixel), one matrix
  per image shared by all channels.
* Solved per image, by one of two solvers, chosen per image from its mask by an estimated cost
  (``_direct_cheaper``; the suite's 1x16x16 and 3x32x32 images practically always take the
  first): **exactly** (up to float64 round-off, relative error ~1e-15 against
  ``scipy.sparse.linalg.spsolve``) by a banded Cholesky factorisation of the image's matrix,
  unknowns numbered in row-major pixel order (band width <= W + 1), one factorisation shared by all
  channels; or, for large images where the factorisation (~ W^4) costs more, by
  Jacobi-preconditioned conjugate gradients per channel on the pixel grid (a branch-free
  8-neighbour stencil, vectorised), warm-started from the weighted mean of the known neighbours,
  until ``||r||_{D^-1} <= tol ||b||_{D^-1}`` (D = the diagonal, b = the known-neighbour part) with
  ``tol = 1e-12`` for float64 images (``_CG_TOL``: error ~5e-12) and ``tol = 1e-9`` for float32
  images (``_CG_TOL32``: error ~4e-9 before the cast, so the output is within one float32 ulp of
  the exactly rounded solution).  With half the pixels removed CG needs ~21 (float32) or ~28
  (float64) iterations.  An image whose CG has not converged after ``_CG_MAXIT`` = 300
  iterations (a badly conditioned mask, e.g. almost everything removed) is solved exactly
  instead.  The choice depends only on the image's mask, so results do not depend on the batch
  or the thread count.
* Then Gaussian noise ``noise_std * z`` is added to the imputed pixels only (kept pixels are
  returned bit-for-bit).  ``z`` is a counter-based standard normal (one splitmix64 hash, Box-Muller on its two
  32-bit halves, so ``|z| <= 6.7``; ln and cos are branch-free polynomials, within 3e-15 of
  numpy's, so that the noise of a whole channel is one vectorised loop) of
  ``(seed, ids[n], c*H*W + h*W + w)``: deterministic, the same on any thread count, and
  independent of the batch an image is in when the caller passes dataset indices as ``ids``.
* All pixels removed: the system is singular (no known value).  Such an image is filled with
  ``fallback`` (scalar or one value per channel, default 0.0) plus the noise; documented choice.
* ``noise_std = 0`` gives the pure linear imputation: a constant image stays constant and a
  linear ramp is reproduced inside interior holes.
"""
from __future__ import annotations

import math

import llvmlite.ir
import numba
import numba.extending
import numpy as np

from ._validate import as_array, check_seed

__all__ = ["impute", "impute_ref", "normal_noise", "normal_noise_ref"]

# (drow, dcol, weight) of the 8 neighbours.
_NEIGHBOURS = (
    (-1, -1, 1.0 / 12), (-1, 0, 1.0 / 6), (-1, 1, 1.0 / 12),
    (0, -1, 1.0 / 6), (0, 1, 1.0 / 6),
    (1, -1, 1.0 / 12), (1, 0, 1.0 / 6), (1, 1, 1.0 / 12),
)

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


# ----------------------------------------------------------------------------- noise
@numba.njit(cache=True, error_model="numpy", inline="always")
def _splitmix64(z):
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _image_key(seed, image_id):
    return _splitmix64(_splitmix64(np.uint64(seed)) ^ np.uint64(image_id))


if numba.config.DISABLE_JIT:  # plain Python: the same bit casts through numpy
    def _float_bits(x):
        return np.float64(x).view(np.uint64)

    def _bits_float(b):
        return np.uint64(b).view(np.float64)
else:
    @numba.extending.intrinsic
    def _float_bits(typingctx, x):
        # float64 -> its IEEE bits as uint64 (a bit cast, vectorisable, unlike math.frexp)
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], llvmlite.ir.IntType(64))
        return numba.types.uint64(numba.types.float64), codegen

    @numba.extending.intrinsic
    def _bits_float(typingctx, b):
        # uint64 IEEE bits -> float64
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], llvmlite.ir.DoubleType())
        return numba.types.float64(numba.types.uint64), codegen

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that e * _LN2_HI is exact for |e| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_PI_2 = 1.5707963267948966


@numba.njit(cache=True, error_model="numpy", inline="always")
def _log01(x):
    # ln(x) for normal positive x, branch-free (vectorisable): x = 2**e * m, m in [sqrt(1/2), sqrt(2)),
    # ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, series to s**23 (error < 1e-17).
    bits = _float_bits(x)
    e = np.int64(bits >> np.uint64(52)) - 1023
    m = _bits_float((bits & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000))
    big = m > _SQRT2
    m = 0.5 * m if big else m
    e = e + 1 if big else e
    s = (m - 1.0) / (m + 1.0)
    t = s * s
    p = 1.0 / 23.0
    p = p * t + 1.0 / 21.0
    p = p * t + 1.0 / 19.0
    p = p * t + 1.0 / 17.0
    p = p * t + 1.0 / 15.0
    p = p * t + 1.0 / 13.0
    p = p * t + 1.0 / 11.0
    p = p * t + 1.0 / 9.0
    p = p * t + 1.0 / 7.0
    p = p * t + 1.0 / 5.0
    p = p * t + 1.0 / 3.0
    fe = float(e)
    return fe * _LN2_HI + (fe * _LN2_LO + 2.0 * s + 2.0 * s * t * p)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _cos_turn(j):
    # cos(2 pi j / 2**32) for a 32-bit integer j (uint64), branch-free: exact quadrant reduction,
    # then the Cephes sin/cos polynomials on [-pi/4, pi/4] (error ~1e-16).
    jj = (j + np.uint64(1 << 29)) & np.uint64(0xFFFFFFFF)
    qd = jj >> np.uint64(30)
    rem = np.int64(jj & np.uint64((1 << 30) - 1)) - (1 << 29)
    t = float(rem) * (_PI_2 / 1073741824.0)
    z = t * t
    sn = 1.58962301576546568060e-10
    sn = sn * z - 2.50507477628578072866e-8
    sn = sn * z + 2.75573136213857245213e-6
    sn = sn * z - 1.98412698295895385996e-4
    sn = sn * z + 8.33333333332211858878e-3
    sn = sn * z - 1.66666666666666307295e-1
    sn = t + t * z * sn
    cs = -1.13585365213876817300e-11
    cs = cs * z + 2.08757008419747316778e-9
    cs = cs * z - 2.75573141792967388112e-7
    cs = cs * z + 2.48015872888517045348e-5
    cs = cs * z - 1.38888888888730564116e-3
    cs = cs * z + 4.16666666666665929218e-2
    cs = 1.0 - 0.5 * z + z * z * cs
    v = sn if (qd & np.uint64(1)) else cs
    return -v if ((qd + np.uint64(1)) & np.uint64(2)) else v


@numba.njit(cache=True, error_model="numpy", inline="always")
def _normal(key, e):
    # Standard normal number e of the stream `key`: Box-Muller on the two 32-bit halves of one
    # splitmix64 hash (u1 in (0, 1], u2 in [0, 1); |z| <= 6.7):
    # sqrt(-2 ln u1) * cos(2 pi u2), with branch-free ln and cos so that loops over e vectorise.
    h = _splitmix64(key ^ np.uint64(e))
    u1 = (float(h >> np.uint64(32)) + 1.0) * (1.0 / 4294967296.0)
    return math.sqrt(-2.0 * _log01(u1)) * _cos_turn(h & np.uint64(0xFFFFFFFF))


@numba.njit(cache=True, error_model="numpy")
def _normals(key, e0, out):
    # out[k] = _normal(key, e0 + k)  (a vectorised loop)
    for k in range(out.shape[0]):
        out[k] = _normal(key, e0 + k)


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


# ----------------------------------------------------------------------------- iterative solver
# Grids padded by one pixel: (H+2) x (W+2) cells, row-major, cell t = (y+1)*(W+2) + x+1 for pixel
# (y, x).  Every loop runs over the cells lo..hi-1 (lo = W+3, hi = (H+1)*(W+2) - 1, i.e. the image
# rows with their padding columns), so the 8 neighbour offsets stay inside the array; padding cells
# hold 0 in every grid that is read through a neighbour offset.  Loops index views from 0 so numba
# adds no negative-index wraparound and LLVM vectorises them.
_FM = {"reassoc", "contract", "arcp", "nsz"}
_CG_TOL = 1e-12  # stop when ||r||_{D^-1} <= _CG_TOL * ||b||_{D^-1} (Jacobi-preconditioned residual)
_CG_TOL32 = 1e-9  # the same for float32 images: error ~4e-9, below float32 resolution
_CG_MAXIT = 300  # then fall back to the exact direct solver


@numba.njit(cache=True, fastmath=_FM)
def _neighbour_sum(src, um, out, lo, hi, wp):
    # out[t] = um[t] * sum_k w_k src[t + off_k]  (w = 1/6 direct, 1/12 diagonal)
    n = hi - lo
    c_ = src[lo - 1:hi - 1]
    e_ = src[lo + 1:hi + 1]
    n_ = src[lo - wp:hi - wp]
    s_ = src[lo + wp:hi + wp]
    nw = src[lo - wp - 1:hi - wp - 1]
    ne = src[lo - wp + 1:hi - wp + 1]
    sw = src[lo + wp - 1:hi + wp - 1]
    se = src[lo + wp + 1:hi + wp + 1]
    u = um[lo:hi]
    o = out[lo:hi]
    w1 = 1.0 / 6.0
    w2 = 1.0 / 12.0
    for i in range(n):
        o[i] = u[i] * (w1 * (c_[i] + e_[i] + n_[i] + s_[i]) + w2 * (nw[i] + ne[i] + sw[i] + se[i]))


@numba.njit(cache=True, fastmath=_FM)
def _apply(p, d, um, q, lo, hi, wp):
    # q = A p on the unknown cells (A = diag(d) - neighbour weights); returns p . q.  On the other
    # cells q is not 0 but never matters: p, d and dinv are 0 there, so they add nothing to p . q,
    # x or the preconditioned residual (um is unused; kept for the signature).
    n = hi - lo
    c_ = p[lo:hi]
    w_ = p[lo - 1:hi - 1]
    e_ = p[lo + 1:hi + 1]
    n_ = p[lo - wp:hi - wp]
    s_ = p[lo + wp:hi + wp]
    nw = p[lo - wp - 1:hi - wp - 1]
    ne = p[lo - wp + 1:hi - wp + 1]
    sw = p[lo + wp - 1:hi + wp - 1]
    se = p[lo + wp + 1:hi + wp + 1]
    dd = d[lo:hi]
    o = q[lo:hi]
    w1 = 1.0 / 6.0
    w2 = 1.0 / 12.0
    pq = 0.0
    for i in range(n):
        v = dd[i] * c_[i] - (w1 * (w_[i] + e_[i] + n_[i] + s_[i]) + w2 * (nw[i] + ne[i] + sw[i] + se[i]))
        o[i] = v
        pq += c_[i] * v
    return pq


@numba.njit(cache=True, fastmath=_FM)
def _cg(bg, x, r, p, q, d, dinv, um, lo, hi, wp, tol, maxit):
    # Jacobi-preconditioned conjugate gradients for A x = b on the unknown cells, starting from x
    # (0 off the unknown cells).  Returns the iteration count, or -1 if not converged in maxit.
    n = hi - lo
    _apply(x, d, um, q, lo, hi, wp)
    b_ = bg[lo:hi]
    x_ = x[lo:hi]
    r_ = r[lo:hi]
    p_ = p[lo:hi]
    q_ = q[lo:hi]
    di = dinv[lo:hi]
    bz = 0.0
    rz = 0.0
    for i in range(n):
        ri = b_[i] - q_[i]
        zi = di[i] * ri
        r_[i] = ri
        p_[i] = zi
        rz += ri * zi
        bz += b_[i] * b_[i] * di[i]
    if bz == 0.0:  # no known neighbour value: the solution is exactly 0
        for i in range(n):
            x_[i] = 0.0
        return 0
    thresh = tol * tol * bz
    it = 0
    while rz > thresh:
        if it == maxit:
            return -1
        pq = _apply(p, d, um, q, lo, hi, wp)
        if not pq > 0.0:
            return -1
        alpha = rz / pq
        rzn = 0.0
        for i in range(n):
            x_[i] += alpha * p_[i]
            ri = r_[i] - alpha * q_[i]
            r_[i] = ri
            rzn += ri * ri * di[i]
        beta = rzn / rz
        rz = rzn
        for i in range(n):
            p_[i] = di[i] * r_[i] + beta * p_[i]
        it += 1
    return it


@numba.njit(cache=True, error_model="numpy")
def _impute_one_cg(x, removed, out, h, w, noise_std, key, tol, maxit, ws, ridx):
    # x, out: (C, H*W) of one image; removed: (H*W,) bool; ws: (12, (H+2)*(W+2)) float64 and
    # ridx: (H*W,) int64 scratch.
    # Writes every pixel of out (kept ones copied).  Returns False if CG did not converge (the
    # caller then runs the exact solver).  Branch-free loops (selects, numpy error model so the
    # divisions need no zero checks) so that they vectorise.
    c = x.shape[0]
    hw = h * w
    wp = w + 2
    lo = wp + 1
    hi = (h + 1) * wp - 1
    um = ws[0]
    d = ws[1]
    dinv = ws[2]
    kw = ws[3]
    tmp = ws[4]
    bg = ws[5]
    xg = ws[6]
    r = ws[7]
    p = ws[8]
    q = ws[9]
    nz = ws[10, :hw]
    ws[:5] = 0.0
    for y in range(h):
        rm = removed[y * w:(y + 1) * w]
        t0 = (y + 1) * wp + 1
        umr = um[t0:t0 + w]
        knr = tmp[t0:t0 + w]
        inr = d[t0:t0 + w]
        for xx in range(w):
            rv = rm[xx]
            umr[xx] = 1.0 if rv else 0.0
            knr[xx] = 0.0 if rv else 1.0  # known
            inr[xx] = 1.0  # inside the image (overwritten below)
    _neighbour_sum(tmp, um, kw, lo, hi, wp)  # known neighbour weight
    for i in range(lo, hi):
        tmp[i] = d[i]
    _neighbour_sum(tmp, um, d, lo, hi, wp)  # in-image neighbour weight (0 off unknown cells)
    for i in range(lo, hi):
        di = d[i]
        dinv[i] = 1.0 / di if di > 0.0 else 0.0
        ki = kw[i]
        kw[i] = 1.0 / ki if ki > 0.0 else 0.0  # now the inverse
    nz[:] = 0.0
    nzc = ws[11, :hw]
    m = 0
    for q_ in range(hw):  # removed pixels in order (the noise is computed for these only); no branch
        ridx[m] = q_
        m += np.int64(removed[q_])
    for ch in range(c):
        xc = x[ch]
        for y in range(h):
            rm = removed[y * w:(y + 1) * w]
            xr = xc[y * w:(y + 1) * w]
            t0 = (y + 1) * wp + 1
            tr = tmp[t0:t0 + w]
            for xx in range(w):
                tr[xx] = 0.0 if rm[xx] else xr[xx]
        _neighbour_sum(tmp, um, bg, lo, hi, wp)
        for i in range(lo, hi):  # warm start: weighted mean of the known neighbours
            xg[i] = bg[i] * kw[i]
        if _cg(bg, xg, r, p, q, d, dinv, um, lo, hi, wp, tol, maxit) < 0:
            return False
        if noise_std != 0.0:  # the removed pixels' numbers in one vectorised loop, then placed
            base = ch * hw
            for k in range(m):
                nzc[k] = _normal(key, base + ridx[k])
            for k in range(m):
                nz[ridx[k]] = nzc[k]
        oc = out[ch]
        for y in range(h):
            rm = removed[y * w:(y + 1) * w]
            xr = xc[y * w:(y + 1) * w]
            orow = oc[y * w:(y + 1) * w]
            nr = nz[y * w:(y + 1) * w]
            t0 = (y + 1) * wp + 1
            gr = xg[t0:t0 + w]
            for xx in range(w):
                orow[xx] = (gr[xx] + noise_std * nr[xx]) if rm[xx] else xr[xx]
    return True


# ----------------------------------------------------------------------------- direct solver
# Unknowns numbered in row-major pixel order.  Only the NW, N, NE and W neighbours of an unknown can
# have smaller numbers, so row u of the lower triangle has its nonzeros in columns first[u]..u
# (first[u] = the smallest such neighbour's number, or u), the Cholesky factor stays inside this
# envelope, and b = max(u - first[u]) <= W + 1.  Band storage, flat, rows of s1 = b + 1 + _PAD:
# f[u*s1 + o - u + k] = entry (u, k) for k in u-b-_PAD..u (o = s1 - 1: the diagonal ends the row).
# Everything left of a row's envelope is an exact zero, so a dot product may start left of it
# without changing its value.  All index arithmetic in the inner loops is unsigned (no negative-
# index wraparound), so that they vectorise.
_PAD = 3  # zero columns left of each band row: rows i+1..i+3 are read from row i's band start


@numba.njit(cache=True, error_model="numpy")
def _number_unknowns(removed, h, w, uidp, pix, ppix):
    # uidp: padded grid of unknown numbers (-1: known or outside); pix / ppix: image / padded index of
    # each unknown.  Returns their count m.  Branch-free.
    wp = w + 2
    for t in range((h + 2) * wp):
        uidp[t] = -1
    m = 0
    for yy in range(h):
        for xx in range(w):
            q = yy * w + xx
            t = q + 2 * yy + wp + 1
            r = removed[q]
            uidp[t] = m if r else -1
            pix[m] = q
            ppix[m] = t
            m += np.int64(r)
    return m


@numba.njit(cache=True)
def _envelope(uidp, ppix, m, wp, first):
    # first[u] (see above); returns the band width b
    b = 0
    for u in range(m):
        t = ppix[u]
        f = u
        v = uidp[t - wp - 1]
        f = min(f, v if v >= 0 else u)
        v = uidp[t - wp]
        f = min(f, v if v >= 0 else u)
        v = uidp[t - wp + 1]
        f = min(f, v if v >= 0 else u)
        v = uidp[t - 1]
        f = min(f, v if v >= 0 else u)
        first[u] = f
        b = max(b, u - f)
    return b


@numba.njit(cache=True)
def _direct_cheaper(m, b, c, h, w):
    # Estimated cost (ns, one thread, measured on the development machine, an AVX-512 EPYC) of the
    # direct solve, ~0.06 per m*b*b (the factor) + 0.25 per c*m*b (the two triangular solves),
    # against CG's ~0.75 per channel, grid cell and iteration, with b + 8 iterations (a low
    # estimate: measured 19..107 for b = 12..33 on 3x32x32 ROAD masks, so the choice leans towards
    # CG).  The set-up, a few us per image either way, is left out.  Measured (mean per image, MoRF
    # masks at t = 0.1..0.9): direct 1.6-6x faster than CG on 3x32x32 shapes, 1.2-6.5x on 3x48x48
    # and 3x64x64 synthetic images, 0.85-2x on 1x16x16 digits.
    return m * b * (0.06 * b + 0.25 * c) <= 0.75 * c * (h + 2) * (w + 2) * (b + 8)


@numba.njit(cache=True, fastmath=_FM)
def _band_cholesky(f, m, b, first, last, inv):
    # In place A = L L^T (band storage above).  Left-looking by columns: the entries of column j
    # (rows j+1..last[j], the last row whose envelope reaches j) are independent dot products, done
    # 4 rows at a time so that row j is loaded once per 4 (rows outside the envelope are skipped,
    # their entries stay 0).  Each dot runs over the whole band of its row (from column i - b; the
    # 4 rows from the first one's start): measured faster than starting at the envelopes, whose
    # data-dependent starts and lengths vectorise worse.  inv[j] = 1 / L[j, j].
    s1 = b + 1 + _PAD
    o = s1 - 1
    for j in range(m):
        last[j] = j
    for i in range(m):
        if last[first[i]] < i:
            last[first[i]] = i
    for j in range(1, m):
        if last[j - 1] > last[j]:
            last[j] = last[j - 1]
    uo = np.uint64(o)
    for j in range(m):
        bj = j * s1 + o - j
        k0 = j - b if j > b else 0
        pb = np.uint64(bj + k0)
        s = 0.0
        for t in range(np.uint64(j - k0)):
            s += f[pb + t] * f[pb + t]
        d = math.sqrt(f[bj + j] - s)
        f[bj + j] = d
        iv = 1.0 / d
        inv[j] = iv
        i = j + 1
        le = last[j] + 1
        while i + 4 <= le:
            k0 = min(min(first[i], first[i + 1]), min(first[i + 2], first[i + 3]))
            if k0 <= j:  # else all four entries are outside the envelope (stay 0)
                k0 = i - b if i > b else 0
                n = np.uint64(j - k0)
                pb = np.uint64(bj + k0)
                p0 = np.uint64(i * s1 + o - i + k0)
                p1 = p0 + uo
                p2 = p1 + uo
                p3 = p2 + uo
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                for t in range(n):
                    v = f[pb + t]
                    a0 += f[p0 + t] * v
                    a1 += f[p1 + t] * v
                    a2 += f[p2 + t] * v
                    a3 += f[p3 + t] * v
                q = i * s1 + o - i + j
                f[q] = (f[q] - a0) * iv
                q += o
                f[q] = (f[q] - a1) * iv
                q += o
                f[q] = (f[q] - a2) * iv
                q += o
                f[q] = (f[q] - a3) * iv
            i += 4
        while i < le:
            fi = first[i]
            if fi <= j:
                k0 = i - b if i > b else 0
                pa = np.uint64(i * s1 + o - i + k0)
                pb = np.uint64(bj + k0)
                s = 0.0
                for t in range(np.uint64(j - k0)):
                    s += f[pa + t] * f[pb + t]
                q = i * s1 + o - i + j
                f[q] = (f[q] - s) * iv
            i += 1


@numba.njit(cache=True, fastmath=_FM)
def _band_solve(f, m, b, inv, y, c):
    # Solve L L^T X = Y in place for the c right-hand sides y[ch*m:(ch+1)*m]: forward by rows (dot
    # products), backward by rows (updates), each over the whole band of the row.  Three channels
    # at a time share the loads of each row of L and give three independent dependency chains.
    s1 = b + 1 + _PAD
    o = s1 - 1
    c0 = 0
    while c0 + 3 <= c:
        q0 = c0 * m
        q1 = q0 + m
        q2 = q1 + m
        for i in range(m):
            k0 = i - b if i > b else 0
            pa = np.uint64(i * s1 + o - i + k0)
            r0 = np.uint64(q0 + k0)
            r1 = np.uint64(q1 + k0)
            r2 = np.uint64(q2 + k0)
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for t in range(np.uint64(i - k0)):
                lv = f[pa + t]
                a0 += lv * y[r0 + t]
                a1 += lv * y[r1 + t]
                a2 += lv * y[r2 + t]
            iv = inv[i]
            y[q0 + i] = (y[q0 + i] - a0) * iv
            y[q1 + i] = (y[q1 + i] - a1) * iv
            y[q2 + i] = (y[q2 + i] - a2) * iv
        for i in range(m - 1, -1, -1):
            k0 = i - b if i > b else 0
            iv = inv[i]
            x0 = y[q0 + i] * iv
            x1 = y[q1 + i] * iv
            x2 = y[q2 + i] * iv
            y[q0 + i] = x0
            y[q1 + i] = x1
            y[q2 + i] = x2
            pa = np.uint64(i * s1 + o - i + k0)
            r0 = np.uint64(q0 + k0)
            r1 = np.uint64(q1 + k0)
            r2 = np.uint64(q2 + k0)
            for t in range(np.uint64(i - k0)):
                lv = f[pa + t]
                y[r0 + t] -= lv * x0
                y[r1 + t] -= lv * x1
                y[r2 + t] -= lv * x2
        c0 += 3
    for ch in range(c0, c):
        q0 = ch * m
        for i in range(m):
            k0 = i - b if i > b else 0
            pa = np.uint64(i * s1 + o - i + k0)
            r0 = np.uint64(q0 + k0)
            a0 = 0.0
            for t in range(np.uint64(i - k0)):
                a0 += f[pa + t] * y[r0 + t]
            y[q0 + i] = (y[q0 + i] - a0) * inv[i]
        for i in range(m - 1, -1, -1):
            k0 = i - b if i > b else 0
            x0 = y[q0 + i] * inv[i]
            y[q0 + i] = x0
            pa = np.uint64(i * s1 + o - i + k0)
            r0 = np.uint64(q0 + k0)
            for t in range(np.uint64(i - k0)):
                y[r0 + t] -= f[pa + t] * x0


@numba.njit(cache=True, error_model="numpy")
def _impute_one_direct(x, removed, out, h, w, noise_std, key, m, b, iws, gws, fws):
    # x, out: (C, H*W) of one image; 0 < m < H*W unknowns already numbered (iws[0..2]) with their
    # envelope (iws[3], band width b).  iws[4]: scratch; gws: (4, (H+2)*(W+2)) grids, [0] the
    # diagonal (in-image neighbour weight), [1] ones, [2] zero padding, [3] scratch; fws: float64
    # scratch of at least m*(b+1+_PAD) + (C+2)*m.  Writes every pixel of out (kept ones copied).
    c = x.shape[0]
    hw = h * w
    wp = w + 2
    lo = wp + 1
    hi = (h + 1) * wp - 1
    uidp = iws[0]
    pix = iws[1]
    ppix = iws[2]
    first = iws[3]
    last = iws[4]
    dg = gws[0]
    one = gws[1]
    kv = gws[2]
    gg = gws[3]
    s1 = b + 1 + _PAD
    o = s1 - 1
    nf = m * s1
    f = fws[:nf]
    y = fws[nf:nf + c * m]
    inv = fws[nf + c * m:nf + (c + 1) * m]
    nz = fws[nf + (c + 1) * m:nf + (c + 2) * m]
    nonzero = False
    for ch in range(c):  # right-hand sides: the known neighbours' weighted sums, one grid pass
        xc = x[ch]
        for yy in range(h):
            for xx in range(w):
                q = yy * w + xx
                kv[q + 2 * yy + lo] = 0.0 if removed[q] else xc[q]
        _neighbour_sum(kv, one, gg, lo, hi, wp)
        for u in range(m):
            v = gg[ppix[u]]
            y[ch * m + u] = v
            nonzero |= v != 0.0
    if nonzero:  # else every solution is exactly 0
        f[:] = 0.0
        w1 = -1.0 / 6.0
        w2 = -1.0 / 12.0
        for u in range(m):
            t = ppix[u]
            r = u * s1 + o - u
            v = uidp[t - wp - 1]
            f[r + v if v >= 0 else r + u] = w2  # not an unknown: a dummy write to the diagonal
            v = uidp[t - wp]
            f[r + v if v >= 0 else r + u] = w1
            v = uidp[t - wp + 1]
            f[r + v if v >= 0 else r + u] = w2
            v = uidp[t - 1]
            f[r + v if v >= 0 else r + u] = w1
            f[r + u] = dg[t]
        _band_cholesky(f, m, b, first, last, inv)
        _band_solve(f, m, b, inv, y, c)
    for ch in range(c):
        xc = x[ch]
        oc = out[ch]
        for q in range(hw):
            oc[q] = xc[q]
        if noise_std != 0.0:  # the removed pixels' numbers in one vectorised loop, then placed
            base = ch * hw
            for k in range(m):
                nz[k] = _normal(key, base + pix[k])
            for u in range(m):
                oc[pix[u]] = y[ch * m + u] + noise_std * nz[u]
        else:
            for u in range(m):
                oc[pix[u]] = y[ch * m + u]


_AUTO, _CG, _DIRECT = 0, 1, 2  # solver of _impute_nb: by estimated cost, or forced (tests)


@numba.njit(cache=True, error_model="numpy")
def _fill_all(out, fallback, noise_std, key):
    # every pixel removed: the documented fallback value plus the noise
    hw = out.shape[1]
    for ch in range(out.shape[0]):
        oc = out[ch]
        base = ch * hw
        fb = fallback[ch]
        for q in range(hw):
            oc[q] = fb + noise_std * _normal(key, base + q)


@numba.njit(cache=True, parallel=True)
def _impute_nb(images, mask, h, w, noise_std, seed, ids, fallback, out, tol, maxit, solver, nchunks):
    # images/out: (N, C, H*W); mask: (N, H*W) bool.  Images in a few chunks per thread, one
    # scratch allocation per chunk.  Per image: the direct solver where _direct_cheaper says so
    # (solver=_AUTO) or always (_DIRECT), else CG, falling back to the direct solver when CG has
    # not converged.
    n, c, hw = images.shape
    wp = w + 2
    g = (h + 2) * wp
    lo = wp + 1
    hi = (h + 1) * wp - 1
    for k in numba.prange(nchunks):
        ws = np.zeros((12, g), dtype=np.float64)
        ridx = np.empty(hw, dtype=np.int64)
        iws = np.empty((5, max(hw, g)), dtype=np.int64)
        gws = np.zeros((4, g), dtype=np.float64)
        gws[1, :] = 1.0
        for yy in range(h):
            for xx in range(w):
                gws[2, (yy + 1) * wp + xx + 1] = 1.0
        _neighbour_sum(gws[2], gws[1], gws[0], lo, hi, wp)  # diagonal: in-image neighbour weight
        gws[2, :] = 0.0
        fws = np.empty(0, dtype=np.float64)
        for i in range(k * n // nchunks, (k + 1) * n // nchunks):
            key = _image_key(seed, ids[i])
            xi = images[i]
            oi = out[i]
            mi = mask[i]
            m = _number_unknowns(mi, h, w, iws[0], iws[1], iws[2])
            if m == 0:
                for ch in range(c):
                    for q in range(hw):
                        oi[ch, q] = xi[ch, q]
                continue
            if m == hw:  # singular: nothing known
                _fill_all(oi, fallback, noise_std, key)
                continue
            b = _envelope(iws[0], iws[2], m, wp, iws[3])
            if solver == _CG or (solver == _AUTO and not _direct_cheaper(m, b, c, h, w)):
                if _impute_one_cg(xi, mi, oi, h, w, noise_std, key, tol, maxit, ws, ridx):
                    continue
            need = m * (b + 1 + _PAD) + (c + 2) * m
            if fws.shape[0] < need:
                fws = np.empty(need, dtype=np.float64)
            _impute_one_direct(xi, mi, oi, h, w, noise_std, key, m, b, iws, gws, fws)


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
    _impute_nb(x.reshape(n, c, h * w), mk.reshape(n, h * w), h, w, std, seed, ids, fb, out,
               _CG_TOL32 if x.dtype == np.float32 else _CG_TOL, _CG_MAXIT, _AUTO,
               max(1, min(n, 4 * numba.get_num_threads())))
    return out.reshape(x.shape)
