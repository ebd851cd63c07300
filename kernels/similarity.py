"""Similarity measures for the sanity checks (Adebayo et al. 2018), batched over map pairs.

Contract:

* :func:`spearman`: Spearman rank correlation of each pair of maps ``a[n], b[n]`` (any shape
  ``(N, ...)``, flattened per item), optionally of the absolute values first.  Ties get averaged
  ranks (``scipy.stats.rankdata(method="average")``), then Pearson of the ranks, as
  ``scipy.stats.spearmanr``.  A **constant map gives NaN** (like scipy, without the warning).
  Ranks by an LSD radix sort over only the key bits that differ; the correlation in one pass of
  exact integer sums of doubled ranks (agrees with scipy to ~1e-16); parallel over pairs from
  2**20 values in total (smaller batches on one thread, see ``_SPEARMAN_PARALLEL_MIN``).
* :func:`ssim`: mean SSIM of each pair of ``(N, H, W)`` maps, as (to ~1e-15; window sums are
  sliding sums) ``skimage.metrics.structural_similarity(a, b, data_range=..., gaussian_weights=False,
  win_size=7, K1=0.01, K2=0.03, use_sample_covariance=True)`` (uniform window, means over the
  windows centred at least ``(win_size-1)//2`` pixels from the border, so the filter's boundary
  mode never matters).  Always computed in float64 (skimage uses float32 for float32 inputs).
* :func:`hog_features` / :func:`hog_pearson`: skimage.feature.hog features of 2-d maps (central
  differences with zero border gradient, unsigned orientations in ``[0, 180)``, cell histograms
  divided by the cell area, overlapping blocks, ``block_norm="L2-Hys"``, eps = 1e-5) and the
  Pearson correlation of the feature vectors of each pair (NaN if one vector is constant, e.g.
  a constant map).  ``pixels_per_cell`` must be even.  skimage accumulates cell histograms in float32; we use float64, so features
  agree to ~1e-6 relative and the Pearson value to better than 1e-5.
* :func:`sobel_edges_ref` (numpy only, a test oracle): per-channel Sobel gradient magnitude
  ``hypot(sobel_rows, sobel_cols)`` as ``scipy.ndimage.sobel``, reduced over channels. The suite's
  sobel control computes it in torch (``suite.methods.controls.sobel_magnitude``); the jitted
  copy that nothing called was removed.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._validate import as_array, check_choice

__all__ = [
    "MEASURES", "MapSimilarity",
    "spearman", "spearman_ref",
    "ssim", "ssim_ref",
    "hog_features", "hog_features_ref", "hog_pearson", "hog_pearson_ref",
    "sobel_edges_ref",
]


# ----------------------------------------------------------------------------- Spearman
@numba.njit(cache=True)
def _pearson(x, y):
    p = x.shape[0]
    mx = 0.0
    my = 0.0
    for i in range(p):
        mx += x[i]
        my += y[i]
    mx /= p
    my /= p
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for i in range(p):
        dx = x[i] - mx
        dy = y[i] - my
        sxy += dx * dy
        sxx += dx * dx
        syy += dy * dy
    if sxx == 0.0 or syy == 0.0:
        return np.nan
    d = math.sqrt(sxx * syy)
    if d == 0.0 or not math.isfinite(d):   # the product under- / overflowed (tiny / huge vectors)
        d = math.sqrt(sxx) * math.sqrt(syy)
    r = sxy / d
    return max(-1.0, min(1.0, r))


@numba.njit(cache=True, error_model="numpy")
def _sort_index(v, absolute, fb, cnt, idx, tmp, srt):
    # srt <- the indices of v (or |v|) in ascending order; returns False if v is constant.
    # An LSD radix sort of order-preserving uint64 keys with digits of up to 9 bits over only the
    # bit range in which the keys differ (float32 data in float64: 5 passes, not 8), all digit
    # histograms in one read.  When those bits and the index fit in 64 bits, the words
    # (key bits << index bits | index) are sorted directly (no indirect key load per pass).
    # fb: (p,) float64 scratch (holds the keys), cnt: (8, 512) int64, idx/tmp/srt: (p,) int64.
    p = v.shape[0]
    for j in range(p):
        fb[j] = (abs(v[j]) if absolute else v[j]) + 0.0  # -0.0 + 0.0 == +0.0
    keys = fb.view(np.uint64)
    top = np.uint64(1) << np.uint64(63)
    orv = np.uint64(0)
    andv = ~np.uint64(0)
    for j in range(p):
        b = keys[j]
        # negative: -bits (two's complement), not ~bits, so that trailing zero bits (float32 data
        # in float64, integers) stay zero and the radix passes over them are skipped
        k = (~b + np.uint64(1)) if (b & top) else (b | top)
        keys[j] = k
        orv |= k
        andv &= k
    diff = orv ^ andv
    if diff == 0:
        return False
    lo = 0
    while not (diff >> np.uint64(lo)) & np.uint64(1):
        lo += 1
    hi = 64
    while not (diff >> np.uint64(hi - 1)) & np.uint64(1):
        hi -= 1
    bits = hi - lo
    npass = (bits + 8) // 9 if p >= 512 else (bits + 7) // 8  # digits of <= 9 (<= 8) bits
    wd = (bits + npass - 1) // npass
    nbk = 1 << wd
    dmask = np.uint64(nbk - 1)
    uwd = np.uint64(wd)
    cnt[:npass] = 0
    ulo = np.uint64(lo)
    nb = 1
    while (1 << nb) < p:
        nb += 1
    if hi - lo + nb <= 64:
        # packed path: sort words (key bits lo..hi-1 above the index), no indirection per pass
        words = idx.view(np.uint64)
        wtmp = tmp.view(np.uint64)
        unb = np.uint64(nb)
        for j in range(p):
            wv = ((keys[j] >> ulo) << unb) | np.uint64(j)
            words[j] = wv
            k = wv >> unb
            for s in range(npass):
                cnt[s, np.int64(k & dmask)] += 1
                k >>= uwd
        for s in range(npass):
            total = 0
            for d in range(nbk):
                c = cnt[s, d]
                cnt[s, d] = total
                total += c
        wsrc = words
        wdst = wtmp
        for s in range(npass):
            sh = np.uint64(nb + wd * s)
            for j in range(p):
                wv = wsrc[j]
                d = np.int64((wv >> sh) & dmask)
                wdst[cnt[s, d]] = wv
                cnt[s, d] += 1
            wsrc, wdst = wdst, wsrc
        imask = (np.uint64(1) << unb) - np.uint64(1)
        for t in range(p):
            srt[t] = np.int64(wsrc[t] & imask)
        return True
    for j in range(p):
        k = keys[j] >> ulo
        for s in range(npass):
            cnt[s, np.int64(k & dmask)] += 1
            k >>= uwd
    for s in range(npass):
        total = 0
        for d in range(nbk):
            c = cnt[s, d]
            cnt[s, d] = total
            total += c
    src = idx
    dst = tmp
    for j in range(p):
        src[j] = j
    for s in range(npass):
        sh = np.uint64(lo + wd * s)
        for j in range(p):
            e = src[j]
            d = np.int64((keys[e] >> sh) & dmask)
            dst[cnt[s, d]] = e
            cnt[s, d] += 1
        src, dst = dst, src
    for t in range(p):
        srt[t] = src[t]
    return True


@numba.njit(cache=True, error_model="numpy")
def _group_ranks(sv, srt, r2):
    # r2[srt[t]] = 2 * (1-based average rank) = i + k + 1 for a tie group at sorted positions
    # i..k-1, an exact integer; sv: the values in ascending order (sv[t] is the value of srt[t])
    p = srt.shape[0]
    i = 0
    while i < p:
        k = i + 1
        ki = sv[i]
        while k < p and sv[k] == ki:
            k += 1
        val = i + k + 1
        for t in range(i, k):
            r2[srt[t]] = val
        i = k


@numba.njit(cache=True, error_model="numpy")
def _twice_ranks(v, absolute, fb, cnt, idx, tmp, srt, r2):
    # doubled average ranks of v (or |v|) into r2; False if v is constant
    if not _sort_index(v, absolute, fb, cnt, idx, tmp, srt):
        return False
    p = srt.shape[0]
    for t in range(p):  # the keys in fb are no longer needed: fb holds the sorted values
        e = v[srt[t]]
        fb[t] = (abs(e) if absolute else e) + 0.0
    _group_ranks(fb, srt, r2)
    return True


@numba.njit(cache=True, error_model="numpy", inline="always")
def _back_step(sv, srt, av, aso, u, lo, hi):
    # one step of _abs_merge's back chain: the larger of -sv[lo] (a negative) and sv[hi] (a
    # non-negative; ties: the non-negative) into position u, selected without a branch
    xb = -sv[lo]
    yb = sv[hi]
    cb = xb > yb
    eb = srt[lo]
    ej = srt[hi]
    av[u] = xb if cb else yb
    aso[u] = eb if cb else ej
    return lo + cb, hi - (1 - cb)


@numba.njit(cache=True, error_model="numpy")
def _abs_merge(sv, srt, k0, av, aso):
    # av, aso <- |v| in ascending order and the indices, from the ascending values sv[0..p - 1]
    # of v (indices srt, k0 of them negative) followed by the sentinels sv[p] = +inf and
    # sv[p + 1] = -inf.
    # The merge, without branches (a data-dependent branch mispredicts about every other value)
    # and as two independent chains, so that their load -> compare -> index latencies overlap:
    # the smaller half of the |v| order from the front (negatives from k0 - 1 down, non-negatives
    # from k0 up; ties: the negative first) and the larger half from the back (negatives from 0
    # up, non-negatives from p - 1 down; ties: the non-negative last), which is the same order
    # reversed, so the two halves split the values exactly.  The back chain never runs out of
    # both runs, and a run it has used up holds values that lose against the other run, so it
    # needs no sentinels; the front chain reads sv[p] = +inf past the non-negatives and
    # sv[p + 1] = -inf (negated: +inf) past the negatives.  With +inf among the values the
    # sentinel could tie with them, so then the back chain does the whole merge.
    # (A function of its own: inlined into _both_ranks the loop compiled ~3 us slower per map.)
    p = srt.shape[0]
    half = p // 2 if sv[p - 1] < math.inf else 0
    i = k0 - 1
    j = k0
    lo = 0
    hi = p - 1
    for t in range(half):
        x = -sv[i if i >= 0 else p + 1]
        y = sv[j]
        c = x <= y
        ei = srt[max(i, 0)]
        ej = srt[min(j, p - 1)]
        av[t] = x if c else y
        aso[t] = ei if c else ej
        i -= c
        j += 1 - c
        lo, hi = _back_step(sv, srt, av, aso, p - 1 - t, lo, hi)
    for u in range(p - 1 - half, half - 1, -1):  # the middle value if p is odd; all if half == 0
        lo, hi = _back_step(sv, srt, av, aso, u, lo, hi)


@numba.njit(cache=True, error_model="numpy")
def _both_ranks(v, fb, cnt, idx, tmp, srt, aso, r2s, r2a):
    # doubled ranks of v (r2s) and of |v| (r2a) from ONE sort of v: the ascending order of |v|
    # is a linear merge of the negatives (from the most negative backwards) with the
    # non-negatives (forwards). Returns (v not constant, |v| not constant).
    # Scratch: fb (p + 2,) float64, cnt (8, 512), idx/tmp/srt/aso (p,) int64.
    if not _sort_index(v, False, fb, cnt, idx, tmp, srt):
        return False, False   # v constant, so |v| constant too
    p = srt.shape[0]
    # the sorted values at sv[0..p - 1], then the sentinels sv[p] = +inf and sv[p + 1] = -inf
    # (the keys in fb are no longer needed); k0 negatives
    sv = fb
    k0 = 0
    for t in range(p):
        e = v[srt[t]] + 0.0
        sv[t] = e
        k0 += e < 0.0
    sv[p] = math.inf
    sv[p + 1] = -math.inf
    _group_ranks(sv, srt, r2s)
    if k0 == 0:  # no negatives (e.g. Grad-CAM maps): |v| = v, the same ranks
        r2a[:] = r2s
        return True, True
    av = tmp.view(np.float64)
    _abs_merge(sv, srt, k0, av, aso)
    if av[0] == av[p - 1]:
        return True, False
    _group_ranks(av, aso, r2a)
    return True, True


@numba.njit(cache=True, error_model="numpy")
def _spearman_rows(a, b, absolute, out, lo, hi):
    # Pairs lo..hi-1 into out, one set of scratch buffers.  Pearson of the doubled ranks in one
    # pass of exact integer sums: the mean doubled rank is p + 1 whatever the ties, so
    # sxy = sum r2a r2b - p (p + 1)^2 (exact in int64 for p < 2**20).
    p = a.shape[1]
    m2 = p * (p + 1) * (p + 1)
    fb = np.empty(p, dtype=np.float64)
    cnt = np.empty((8, 512), dtype=np.int64)
    idx = np.empty(p, dtype=np.int64)
    tmp = np.empty(p, dtype=np.int64)
    srt = np.empty(p, dtype=np.int64)
    ra = np.empty(p, dtype=np.int64)
    rb = np.empty(p, dtype=np.int64)
    for i in range(lo, hi):
        if not _twice_ranks(a[i], absolute, fb, cnt, idx, tmp, srt, ra) or \
                not _twice_ranks(b[i], absolute, fb, cnt, idx, tmp, srt, rb):
            out[i] = np.nan  # a constant map
            continue
        sab = 0
        saa = 0
        sbb = 0
        for j in range(p):
            sab += ra[j] * rb[j]
            saa += ra[j] * ra[j]
            sbb += rb[j] * rb[j]
        r = (sab - m2) / math.sqrt(float(saa - m2) * float(sbb - m2))
        out[i] = max(-1.0, min(1.0, r))


@numba.njit(cache=True, parallel=True)
def _spearman_nb(a, b, absolute, out, nchunks):
    n = a.shape[0]
    for c in numba.prange(nchunks):
        _spearman_rows(a, b, absolute, out, c * n // nchunks, (c + 1) * n // nchunks)


# Below this many values in total (pairs x values per map) Spearman runs on one thread: about
# 20 ms of work at most, where the fork/join and, on a loaded machine, a preempted worker thread
# (the other waits for it) cost more than the split saves (measured: 128 pairs of 32 x 32 under
# load 6 on 2 cores, median 18 us/pair serial vs 39 us/pair on 2 threads).
_SPEARMAN_PARALLEL_MIN = 1 << 20


def _pair(a, b, ndim=None):
    x = as_array(a, "a", ndim=ndim if ndim else tuple(range(1, 8)))
    y = as_array(b, "b", ndim=ndim if ndim else tuple(range(1, 8)))
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    return x, y


def spearman_ref(a, b, absolute: bool = False) -> np.ndarray:
    """Reference: a loop of ``scipy.stats.spearmanr`` over the pairs."""
    import scipy.stats

    x, y = _pair(a, b)
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    y = y.reshape(y.shape[0], -1).astype(np.float64)
    if absolute:
        x, y = np.abs(x), np.abs(y)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            out[i] = np.nan
        else:
            out[i] = scipy.stats.spearmanr(x[i], y[i]).statistic
    return out


def spearman(a, b, absolute: bool = False) -> np.ndarray:
    """Spearman rank correlation per pair: ``(N,)`` float64; ``a``, ``b``: same shape ``(N, ...)``.

    ``absolute=True`` ranks ``|a|`` and ``|b|``.  Ties: averaged ranks.  Constant map: NaN.
    """
    x, y = _pair(a, b)
    # float32 pairs go in as they are (values widened exactly inside), anything else as float64
    dt = np.float32 if x.dtype == y.dtype == np.float32 else np.float64
    x = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=dt)
    y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dt)
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    if x.size < _SPEARMAN_PARALLEL_MIN or numba.get_num_threads() == 1:
        _spearman_rows(x, y, bool(absolute), out, 0, n)
    else:
        _spearman_nb(x, y, bool(absolute), out, max(1, min(n, 4 * numba.get_num_threads())))
    return out


# ----------------------------------------------------------------------------- SSIM
@numba.njit(cache=True, error_model="numpy")
def _ssim_stats(a, win, cov_norm, hs, acc, ux, vx):
    # Mean ux and variance vx (cov_norm * (E[x^2] - ux^2)) of every window of a, (oh, ow) each;
    # hs: (3, H, ow), acc: (3, ow) scratch.  Window sums by sliding sums (add the entering
    # column / row, subtract the leaving one): O(1) per pixel instead of O(win); agree with
    # direct sums to ~1e-15.  Along the rows first, then down the columns one row of windows at
    # a time (vectorized over the columns; per window the same sequence of additions as a
    # window-by-window loop).  (Plain 2-d / 3-d indexing: views cost reference counting, and
    # offsets in an inner loop's index numba's wraparound code.)
    h, w = a.shape
    oh = ux.shape[0]
    ow = ux.shape[1]
    npx = float(win * win)
    for y in range(h):
        s0 = 0.0
        s2 = 0.0
        for k in range(win):
            u = a[y, k]
            s0 += u
            s2 += u * u
        hs[0, y, 0] = s0
        hs[1, y, 0] = s2
        for xo in range(1, ow):
            u = a[y, xo + win - 1]
            u0 = a[y, xo - 1]
            s0 += u - u0
            s2 += u * u - u0 * u0
            hs[0, y, xo] = s0
            hs[1, y, xo] = s2
    acc[:2] = 0.0
    for q in range(2):
        for k in range(win):
            for xo in range(ow):
                acc[q, xo] += hs[q, k, xo]
    for yo in range(oh):
        if yo > 0:
            yi = yo + win - 1
            ye = yo - 1
            for q in range(2):
                for xo in range(ow):
                    acc[q, xo] += hs[q, yi, xo] - hs[q, ye, xo]
        for xo in range(ow):
            m = acc[0, xo] / npx
            ux[yo, xo] = m
            vx[yo, xo] = cov_norm * (acc[1, xo] / npx - m * m)


@numba.njit(cache=True, error_model="numpy")
def _ssim_with(ux, vx, a, b, win, c1, c2, cov_norm, hs, acc, val):
    # Mean SSIM of (H, W) maps a and b given a's window means ux and variances vx (_ssim_stats);
    # hs: (3, H, ow), acc: (3, ow), val: (oh, ow) scratch.  Window sums of y, y^2, x y as in
    # _ssim_stats, the SSIM of each window (vectorized over a row of windows: the divisions were
    # most of the time), then their sum in the order of a window-by-window loop (columns of
    # windows outer, rows inner).
    h, w = a.shape
    oh = ux.shape[0]
    ow = ux.shape[1]
    npx = float(win * win)
    for y in range(h):
        s1 = 0.0
        s3 = 0.0
        s4 = 0.0
        for k in range(win):
            u = a[y, k]
            v = b[y, k]
            s1 += v
            s3 += v * v
            s4 += u * v
        hs[0, y, 0] = s1
        hs[1, y, 0] = s3
        hs[2, y, 0] = s4
        for xo in range(1, ow):
            u = a[y, xo + win - 1]
            v = b[y, xo + win - 1]
            u0 = a[y, xo - 1]
            v0 = b[y, xo - 1]
            s1 += v - v0
            s3 += v * v - v0 * v0
            s4 += u * v - u0 * v0
            hs[0, y, xo] = s1
            hs[1, y, xo] = s3
            hs[2, y, xo] = s4
    acc[:] = 0.0
    for q in range(3):
        for k in range(win):
            for xo in range(ow):
                acc[q, xo] += hs[q, k, xo]
    for yo in range(oh):
        if yo > 0:
            yi = yo + win - 1
            ye = yo - 1
            for q in range(3):  # one array per loop: LLVM vectorizes it (three: 3x slower)
                for xo in range(ow):
                    acc[q, xo] += hs[q, yi, xo] - hs[q, ye, xo]
        for xo in range(ow):
            u = ux[yo, xo]
            uy = acc[0, xo] / npx
            vy = cov_norm * (acc[1, xo] / npx - uy * uy)
            vxy = cov_norm * (acc[2, xo] / npx - u * uy)
            p1 = 2.0 * u * uy + c1
            p2 = 2.0 * vxy + c2
            q1 = u * u + uy * uy + c1
            q2 = vx[yo, xo] + vy + c2
            val[yo, xo] = (p1 * p2) / (q1 * q2)
    total = 0.0
    for xo in range(ow):
        for yo in range(oh):
            total += val[yo, xo]
    return total / (oh * ow)


@numba.njit(cache=True, error_model="numpy")
def _ssim_one(a, b, win, c1, c2, cov_norm, hs, acc, val, ux, vx):
    # Mean SSIM of one pair of (H, W) maps; scratch hs (3, H, ow), acc (3, ow), val / ux / vx
    # (oh, ow).
    _ssim_stats(a, win, cov_norm, hs, acc, ux, vx)
    return _ssim_with(ux, vx, a, b, win, c1, c2, cov_norm, hs, acc, val)


@numba.njit(cache=True, parallel=True)
def _ssim_nb(a, b, win, c1, c2, cov_norm):
    n, h, w = a.shape
    out = np.empty(n, dtype=np.float64)
    oh = h - win + 1
    ow = w - win + 1
    for i in numba.prange(n):
        hs = np.empty((3, h, ow), dtype=np.float64)
        acc = np.empty((3, ow), dtype=np.float64)
        val = np.empty((3, oh, ow), dtype=np.float64)
        out[i] = _ssim_one(a[i], b[i], win, c1, c2, cov_norm, hs, acc, val[0], val[1], val[2])
    return out


def _ssim_args(a, b, data_range, win_size, K1, K2):
    x, y = _pair(a, b, ndim=3)
    n, h, w = x.shape
    if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd int >= 3, got {win_size!r}")
    if win_size > min(h, w):
        raise ValueError(f"win_size={win_size} exceeds the map size {h} x {w}")
    try:
        dr = float(data_range)
    except (TypeError, ValueError):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}") from None
    if not (math.isfinite(dr) and dr > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    for nm, kv in (("K1", K1), ("K2", K2)):
        if not (math.isfinite(float(kv)) and float(kv) > 0):
            raise ValueError(f"{nm} must be a positive number, got {kv!r}")
    return x, y, dr, int(win_size)


def ssim_ref(a, b, data_range, win_size: int = 7, use_sample_covariance: bool = True, K1=0.01, K2=0.03):
    """Reference: a loop of ``skimage.metrics.structural_similarity`` on float64 copies."""
    from skimage.metrics import structural_similarity

    x, y, dr, win = _ssim_args(a, b, data_range, win_size, K1, K2)
    return np.array([
        structural_similarity(x[i].astype(np.float64), y[i].astype(np.float64), data_range=dr, win_size=win,
                              gaussian_weights=False, use_sample_covariance=use_sample_covariance, K1=K1, K2=K2)
        for i in range(x.shape[0])
    ])


def ssim(a, b, data_range, win_size: int = 7, use_sample_covariance: bool = True, K1=0.01, K2=0.03) -> np.ndarray:
    """Mean SSIM per pair of ``(N, H, W)`` maps: ``(N,)`` float64 (uniform window, see module doc).

    ``data_range`` (required, > 0): max - min of the value range, as skimage's argument.
    """
    x, y, dr, win = _ssim_args(a, b, data_range, win_size, K1, K2)
    npx = win * win
    cov_norm = npx / (npx - 1.0) if use_sample_covariance else 1.0
    return _ssim_nb(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                    win, (K1 * dr) ** 2, (K2 * dr) ** 2, cov_norm)


# ----------------------------------------------------------------------------- HOG
@numba.njit(cache=True, error_model="numpy")
def _hog_pixel(m, y, x, lo, hi, ce, se):
    # (bin, magnitude) of pixel (y, x), or bin -1 where it adds nothing (zero gradient, or an
    # orientation in no bin).  The scalar reference arithmetic of _hog_one, which runs it on the
    # pixels its branch-free row pass flags.
    h, w = m.shape
    nbins = lo.shape[0]
    gr = m[y + 1, x] - m[y - 1, x] if 0 < y < h - 1 else 0.0
    gc = m[y, x + 1] - m[y, x - 1] if 0 < x < w - 1 else 0.0
    if gr == 0.0 and gc == 0.0:
        return -1, 0.0  # magnitude 0 adds nothing, whatever its bin
    s2 = gc * gc + gr * gr
    # sqrt is hypot to 1 ulp and 2.5x faster; hypot where the squares over/underflow
    mag = math.sqrt(s2) if 1e-290 < s2 < 1e290 else math.hypot(gc, gr)
    ur = gr
    uc = gc
    if ur < 0.0 or (ur == 0.0 and uc < 0.0):
        ur = -ur
        uc = -uc
    tol = 1e-12 * (abs(ur) + abs(uc))
    o = 0
    dmin = math.inf
    for k in range(1, nbins):
        d = ur * ce[k] - uc * se[k]
        o += d >= 0.0
        dmin = min(dmin, abs(d))
    if dmin <= tol:
        ori = (math.atan2(gr, gc) * (180.0 / math.pi)) % 180.0
        o = min(int(ori * (nbins / 180.0)), nbins - 1)
        while o > 0 and ori < lo[o]:
            o -= 1
        while o < nbins - 1 and ori >= hi[o]:
            o += 1
        if not (ori >= lo[o] and ori < hi[o]):
            return -1, 0.0
    return o, mag


@numba.njit(cache=True, error_model="numpy")
def _hog_one(m, lo, hi, ce, se, cr, cc, br, bc, hist, blk, hrow, out):
    # HOG features of one (H, W) map into out (F,); hist: (H // cr, W // cc, nbins) scratch,
    # blk: (br * bc * nbins,) scratch, hrow: (7, H * W) float64 scratch; m C-contiguous.  Cells
    # tile the top-left (H // cr) x (W // cc) region, so every binned pixel is inside the map.
    # Binning without atan2 (it was 60% of the time): the unsigned orientation t in [0, 180) is
    # >= the edge e (0 < e < 180) iff sin(t - e) >= 0, i.e. gr cos(e) - gc sin(e) >= 0 once the
    # gradient is turned into the upper half-plane; ce / se hold cos / sin of the edges lo; the
    # bin is the number of edges at or below the orientation.
    # Where that test is within rounding of 0 (the orientation on an edge), the bin comes from
    # the orientation in degrees against the float32 edges, as skimage computes it.
    # Branch-free passes over all pixels compute gradients, magnitudes (sqrt), bins and the
    # distance to the nearest edge, one edge at a time (long loops that LLVM vectorizes); the
    # pixels that need more (a nonzero gradient whose squares leave sqrt's safe range or are
    # not finite, or on an edge within tolerance) are flagged and redone by _hog_pixel, the
    # scalar arithmetic (a zero gradient, or a pixel in no bin, adds +0.0 to a bin: nothing);
    # then a serial pass adds the magnitudes to the cell histograms in row-major pixel order.
    # Same arithmetic per pixel, same order of the sums: the values of the scalar loop.
    h, w = m.shape
    nbins = lo.shape[0]
    ncr = hist.shape[0]
    ncc = hist.shape[1]
    nbr = ncr - br + 1
    nbc = ncc - bc + 1
    area = float(cr * cc)
    xe = ncc * cc
    ye = ncr * cr
    npx = ye * w  # the rows the cells cover, whole (columns xe.. are computed, never binned)
    mf = m.reshape(h * w)
    vr = hrow[0]
    vc = hrow[1]
    vs = hrow[2]
    vm = hrow[3]
    vt = hrow[4]
    vd = hrow[5]
    vo = hrow[6]
    # gradients along rows (zero in the first and last row) and along columns (zero in the
    # first and last column), each in one pass over the flattened rows
    # (loops over slices, indexed from 0: with offsets in the indices, numba's wraparound of
    # negative indices keeps LLVM from vectorizing them, 10x slower)
    yr = min(ye, h - 1)
    vr[:w] = 0.0
    dst = vr[w:yr * w]
    up = mf[2 * w:]
    dn = mf[:yr * w - w]
    for i in range(dst.shape[0]):
        dst[i] = up[i] - dn[i]
    vr[max(yr, 1) * w:npx] = 0.0
    dst = vc[1:npx - 1]
    rt = mf[2:]
    lf = mf[:npx - 2]
    for i in range(dst.shape[0]):
        dst[i] = rt[i] - lf[i]
    for y in range(ye):
        vc[y * w] = 0.0
        vc[y * w + w - 1] = 0.0
    for i in range(npx):
        gr = vr[i]
        gc = vc[i]
        s2 = gc * gc + gr * gr
        vs[i] = s2
        vm[i] = math.sqrt(s2)
        flip = (gr < 0.0) | ((gr == 0.0) & (gc < 0.0))
        ur = -gr if flip else gr
        uc = -gc if flip else gc
        vr[i] = ur
        vc[i] = uc
        vt[i] = 1e-12 * (abs(ur) + abs(uc))
        vd[i] = math.inf
        vo[i] = 0.0
    for k in range(1, nbins):
        cek = ce[k]
        sek = se[k]
        for i in range(npx):
            d = vr[i] * cek - vc[i] * sek
            vo[i] += 1.0 if d >= 0.0 else 0.0
            vd[i] = min(vd[i], abs(d))
    nflag = 0
    for i in range(npx):
        # redo a nonzero gradient whose squares left sqrt's safe range (or are not finite), or
        # on an edge; a zero gradient adds its magnitude +0.0 (nothing) to a valid bin
        s2 = vs[i]
        nz = (vr[i] != 0.0) | (vc[i] != 0.0)
        ok = (1e-290 < s2) & (s2 < 1e290)
        fl = nz & ((not ok) | (vd[i] <= vt[i]))
        vs[i] = 1.0 if fl else 0.0
        nflag += fl
    if nflag > 0:
        for i in range(npx):
            if vs[i] != 0.0:
                y = i // w
                o, mag = _hog_pixel(m, y, i - y * w, lo, hi, ce, se)
                # a pixel in no bin adds +0.0 to bin 0: nothing (the histograms are >= +0.0)
                vo[i] = max(o, 0)
                vm[i] = mag if o >= 0 else 0.0
    hist[:] = 0.0
    for y in range(ye):
        yi = y // cr
        for xc in range(ncc):  # cell by cell: no division x // cc per pixel
            hc = hist[yi, xc]
            for i in range(y * w + xc * cc, y * w + (xc + 1) * cc):
                hc[np.int64(vo[i])] += vm[i]
    # L2-Hys per block; the divisions in loops of their own (vectorized), the sums in order
    hf = hist.reshape(hist.size)
    for q in range(hf.shape[0]):  # each cell divided once, not once per block it is in
        hf[q] = hf[q] / area
    f = 0
    nblk = blk.shape[0]
    for r in range(nbr):
        for c in range(nbc):
            q = 0
            for u in range(br):
                for v in range(bc):
                    src = hist[r + u, c + v]
                    for o in range(nbins):
                        blk[q] = src[o]
                        q += 1
            s = 0.0
            for q in range(nblk):
                s += blk[q] * blk[q]
            d = math.sqrt(s + 1e-10)
            for q in range(nblk):
                blk[q] = min(blk[q] / d, 0.2)
            s = 0.0
            for q in range(nblk):
                s += blk[q] * blk[q]
            d = math.sqrt(s + 1e-10)
            dst = out[f:f + nblk]
            for q in range(nblk):
                dst[q] = blk[q] / d
            f += nblk


@numba.njit(cache=True)
def _hog_size(h, w, nbins, cr, cc, br, bc):
    return ((h // cr) - br + 1) * ((w // cc) - bc + 1) * br * bc * nbins


@numba.njit(cache=True, parallel=True)
def _hog_nb(maps, lo, hi, ce, se, cr, cc, br, bc):
    n, h, w = maps.shape
    nbins = lo.shape[0]
    out = np.empty((n, _hog_size(h, w, nbins, cr, cc, br, bc)), dtype=np.float64)
    for i in numba.prange(n):
        hist = np.empty((h // cr, w // cc, nbins), dtype=np.float64)
        blk = np.empty(br * bc * nbins, dtype=np.float64)
        hrow = np.empty((7, h * w), dtype=np.float64)
        _hog_one(maps[i], lo, hi, ce, se, cr, cc, br, bc, hist, blk, hrow, out[i])
    return out


@numba.njit(cache=True)  # cheap: serial compiles much faster than parallel
def _rowwise_pearson_nb(x, y):
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = _pearson(x[i], y[i])
    return out


def _hog_args(maps, orientations, pixels_per_cell, cells_per_block, name="maps"):
    m = as_array(maps, name, ndim=3)
    n, h, w = m.shape
    if isinstance(orientations, bool) or not isinstance(orientations, (int, np.integer)) or orientations < 1:
        raise ValueError(f"orientations must be a positive int, got {orientations!r}")
    cr, cc = (int(v) for v in pixels_per_cell)
    br, bc = (int(v) for v in cells_per_block)
    if min(cr, cc, br, bc) < 1:
        raise ValueError(f"pixels_per_cell and cells_per_block must be positive, got {pixels_per_cell}, {cells_per_block}")
    if cr % 2 or cc % 2:
        raise ValueError(f"pixels_per_cell must be even (odd cells are not matched to skimage), got {pixels_per_cell}")
    if (h // cr) < br or (w // cc) < bc:
        raise ValueError(f"maps of {h} x {w} are too small for pixels_per_cell={pixels_per_cell}, "
                         f"cells_per_block={cells_per_block}: need at least {br * cr} x {bc * cc}")
    return np.ascontiguousarray(m, dtype=np.float64), int(orientations), cr, cc, br, bc


def _hog_edges(nb: int):
    """skimage's float32 bin edges [lo, hi) in degrees, and cos / sin of lo."""
    i = np.arange(nb)
    lo = (180.0 / nb * i).astype(np.float32).astype(np.float64)
    hi = (180.0 / nb * (i + 1)).astype(np.float32).astype(np.float64)
    rad = np.deg2rad(lo)
    return lo, hi, np.cos(rad), np.sin(rad)


def hog_features_ref(maps, orientations: int = 9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) -> np.ndarray:
    """Reference: a loop of ``skimage.feature.hog(..., block_norm="L2-Hys")``."""
    from skimage.feature import hog

    m, nb, cr, cc, br, bc = _hog_args(maps, orientations, pixels_per_cell, cells_per_block)
    return np.stack([hog(mi, orientations=nb, pixels_per_cell=(cr, cc), cells_per_block=(br, bc),
                         block_norm="L2-Hys", feature_vector=True) for mi in m])


def hog_features(maps, orientations: int = 9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) -> np.ndarray:
    """HOG feature vectors of ``(N, H, W)`` maps, ``(N, F)`` float64, as skimage's hog (L2-Hys).

    Defaults suit 32 x 32 maps: 4 x 4 cells of 8 x 8 pixels, 3 x 3 blocks of 2 x 2 cells, F = 324.
    """
    m, nb, cr, cc, br, bc = _hog_args(maps, orientations, pixels_per_cell, cells_per_block)
    return _hog_nb(m, *_hog_edges(nb), cr, cc, br, bc)


def hog_pearson_ref(a, b, orientations: int = 9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) -> np.ndarray:
    """Reference: skimage hog features, then ``scipy.stats.pearsonr`` per pair (NaN if constant)."""
    import scipy.stats

    _pair(a, b, ndim=3)
    fa = hog_features_ref(a, orientations, pixels_per_cell, cells_per_block)
    fb = hog_features_ref(b, orientations, pixels_per_cell, cells_per_block)
    return np.array([np.nan if np.ptp(u) == 0 or np.ptp(v) == 0 else scipy.stats.pearsonr(u, v).statistic
                     for u, v in zip(fa, fb)])


def hog_pearson(a, b, orientations: int = 9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) -> np.ndarray:
    """Pearson correlation of the HOG features of each pair of ``(N, H, W)`` maps: ``(N,)``.

    NaN where a feature vector is constant (e.g. a constant map has all-zero features).
    """
    _pair(a, b, ndim=3)
    fa = hog_features(a, orientations, pixels_per_cell, cells_per_block)
    fb = hog_features(b, orientations, pixels_per_cell, cells_per_block)
    return _rowwise_pearson_nb(fa, fb)


# ----------------------------------------------------------------------------- all four, one reference
@numba.njit(cache=True, error_model="numpy")
def _square_sum(r2):
    s = 0
    for j in range(r2.shape[0]):
        s += r2[j] * r2[j]
    return s


@numba.njit(cache=True, error_model="numpy")
def _spearman_known(r2a, saa, ok_a, rb, ok_b):
    # Spearman from doubled ranks r2a (square sum saa) and rb: the arithmetic of _spearman_rows,
    # so the values are identical to spearman()
    if not (ok_a and ok_b):
        return np.nan
    p = rb.shape[0]
    m2 = p * (p + 1) * (p + 1)
    sab = 0
    sbb = 0
    for j in range(p):
        e = rb[j]
        sab += r2a[j] * e
        sbb += e * e
    r = (sab - m2) / math.sqrt(float(saa - m2) * float(sbb - m2))
    return max(-1.0, min(1.0, r))


@numba.njit(cache=True, parallel=True)
def _reference_nb(ref, absref, r2a, ok_a, ss_a, r2s, ok_s, ss_s, sux, svx, win, cov_norm, fref,
                  do_hog, lo, hi, ce, se, cr, cc, br, bc, nchunks):
    n, h, w = ref.shape
    p = h * w
    for c in numba.prange(nchunks):
        hs = np.empty((3, h, w - win + 1), dtype=np.float64)
        acc = np.empty((3, w - win + 1), dtype=np.float64)
        fb = np.empty(p + 2, dtype=np.float64)
        cnt = np.empty((8, 512), dtype=np.int64)
        idx = np.empty(p, dtype=np.int64)
        tmp = np.empty(p, dtype=np.int64)
        srt = np.empty(p, dtype=np.int64)
        aso = np.empty(p, dtype=np.int64)
        hist = np.empty((max(h // cr, 1), max(w // cc, 1), lo.shape[0]), dtype=np.float64)
        blk = np.empty(br * bc * lo.shape[0], dtype=np.float64)
        hrow = np.empty((7, h * w), dtype=np.float64)
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            v = ref[i].reshape(p)
            ok_s[i], ok_a[i] = _both_ranks(v, fb, cnt, idx, tmp, srt, aso, r2s[i], r2a[i])
            ss_s[i] = _square_sum(r2s[i]) if ok_s[i] else 0
            ss_a[i] = _square_sum(r2a[i]) if ok_a[i] else 0
            _ssim_stats(absref[i], win, cov_norm, hs, acc, sux[i], svx[i])
            if do_hog:
                _hog_one(absref[i], lo, hi, ce, se, cr, cc, br, bc, hist, blk, hrow, fref[i])


@numba.njit(cache=True, parallel=True)
def _compare_nb(absref, r2a, ok_a, ss_a, r2s, ok_s, ss_s, sux, svx, fref, other, rows, out, win,
                c1, c2, cov_norm, do_hog, lo, hi, ce, se, cr, cc, br, bc, nchunks):
    # other[j] against reference row rows[j]
    n, h, w = other.shape
    p = h * w
    for c in numba.prange(nchunks):
        fb = np.empty(p + 2, dtype=np.float64)
        cnt = np.empty((8, 512), dtype=np.int64)
        idx = np.empty(p, dtype=np.int64)
        tmp = np.empty(p, dtype=np.int64)
        srt = np.empty(p, dtype=np.int64)
        aso = np.empty(p, dtype=np.int64)
        rbs = np.empty(p, dtype=np.int64)
        rba = np.empty(p, dtype=np.int64)
        absmap = np.empty((h, w), dtype=np.float64)
        hs = np.empty((3, h, w - win + 1), dtype=np.float64)
        acc = np.empty((3, w - win + 1), dtype=np.float64)
        val = np.empty((h - win + 1, w - win + 1), dtype=np.float64)
        hist = np.empty((max(h // cr, 1), max(w // cc, 1), lo.shape[0]), dtype=np.float64)
        blk = np.empty(br * bc * lo.shape[0], dtype=np.float64)
        hrow = np.empty((7, h * w), dtype=np.float64)
        fo = np.empty(fref.shape[1], dtype=np.float64)
        for j in range(c * n // nchunks, (c + 1) * n // nchunks):
            i = rows[j]
            v = other[j].reshape(p)
            okbs, okba = _both_ranks(v, fb, cnt, idx, tmp, srt, aso, rbs, rba)
            out[0, j] = _spearman_known(r2a[i], ss_a[i], ok_a[i], rba, okba)
            out[1, j] = _spearman_known(r2s[i], ss_s[i], ok_s[i], rbs, okbs)
            for y in range(h):
                for x in range(w):
                    absmap[y, x] = abs(other[j, y, x])
            out[2, j] = _ssim_with(sux[i], svx[i], absref[i], absmap, win, c1, c2, cov_norm, hs,
                                   acc, val)
            if do_hog:
                _hog_one(absmap, lo, hi, ce, se, cr, cc, br, bc, hist, blk, hrow, fo)
                out[3, j] = _pearson(fref[i], fo)
            else:
                out[3, j] = np.nan


#: the measures of MapSimilarity, in the order of its output
MEASURES = ("spearman_abs", "spearman", "ssim", "hog")


class MapSimilarity:
    """The four similarity measures of the sanity checks, of many map sets against one reference.

    ``MapSimilarity(ref, data_range=1.0)(other)`` returns ``{"spearman_abs", "spearman", "ssim",
    "hog"}``, each ``(N,)`` float64, with exactly the values of ``spearman(|ref|, |other|)``,
    ``spearman(ref, other)``, ``ssim(|ref|, |other|, data_range, win_size)`` and
    ``hog_pearson(|ref|, |other|, orientations, pixels_per_cell, cells_per_block)``
    (``pixels_per_cell=None``: no HOG, NaN).  The reference's ranks, SSIM window means and
    variances and HOG features are computed once, in the constructor; each call ranks, filters and bins only ``other``, all four measures
    in one parallel pass over the images (the cascading test compares ~10 map sets with one
    reference).  ``identical()`` is what a call on ``ref`` itself returns, without computing it.
    """

    def __init__(self, ref, *, data_range: float = 1.0, win_size: int = 7, orientations: int = 9,
                 pixels_per_cell: tuple[int, int] | None = (8, 8),
                 cells_per_block: tuple[int, int] = (2, 2)):
        r = as_array(ref, "ref", ndim=3)
        self.ref, _, self.data_range, self.win_size = _ssim_args(r, r, data_range, win_size, 0.01, 0.03)
        self.ref = np.ascontiguousarray(self.ref, dtype=np.float64)
        n, h, w = self.ref.shape
        npx = self.win_size ** 2
        self._ssim = (self.win_size, (0.01 * self.data_range) ** 2, (0.03 * self.data_range) ** 2,
                      npx / (npx - 1.0))
        self.do_hog = pixels_per_cell is not None
        if self.do_hog:
            _, nb, cr, cc, br, bc = _hog_args(self.ref[:1], orientations, pixels_per_cell,
                                              cells_per_block, name="ref")
            nf = int(_hog_size(h, w, nb, cr, cc, br, bc))
        else:
            nb, cr, cc, br, bc, nf = 1, 1, 1, 1, 1, 1
        self._hog = (*_hog_edges(nb), cr, cc, br, bc)
        p = h * w
        self._r2a = np.empty((n, p), dtype=np.int64)
        self._r2s = np.empty((n, p), dtype=np.int64)
        self._ok_a = np.empty(n, dtype=np.bool_)
        self._ok_s = np.empty(n, dtype=np.bool_)
        self._ss_a = np.empty(n, dtype=np.int64)
        self._ss_s = np.empty(n, dtype=np.int64)
        self._fref = np.zeros((n, nf), dtype=np.float64)
        self._absref = np.abs(self.ref)
        # the reference's SSIM window means and variances, computed once (the arithmetic of ssim())
        oh, ow = h - self.win_size + 1, w - self.win_size + 1
        self._sux = np.empty((n, oh, ow), dtype=np.float64)
        self._svx = np.empty((n, oh, ow), dtype=np.float64)
        _reference_nb(self.ref, self._absref, self._r2a, self._ok_a, self._ss_a, self._r2s,
                      self._ok_s, self._ss_s, self._sux, self._svx, self.win_size, self._ssim[3],
                      self._fref, self.do_hog, *self._hog, self._chunks())

    def _chunks(self, n: int | None = None) -> int:
        n = self.ref.shape[0] if n is None else n
        return max(1, min(n, 4 * numba.get_num_threads()))

    def __call__(self, other, rows=None) -> dict[str, np.ndarray]:
        """Measures of ``other`` (N, H, W) against the reference; ``rows``: compare ``other[j]``
        with reference map ``rows[j]`` instead (``other`` then holds ``len(rows)`` maps)."""
        o = as_array(other, "other", ndim=3)
        n = self.ref.shape[0]
        if rows is None:
            want = self.ref.shape
            r = np.arange(n, dtype=np.int64)
        else:
            r = np.asarray(rows)
            if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer) or len(r) == 0 \
                    or r.min() < 0 or r.max() >= n:
                raise ValueError(f"rows must be a 1-d array of reference indices in [0, {n}), "
                                 f"got {rows!r}")
            r = r.astype(np.int64)
            want = (len(r),) + self.ref.shape[1:]
        if o.shape != want:
            raise ValueError(f"other must have the reference's shape {want}, got {o.shape}")
        # float32 maps go in as they are (widened exactly inside: the same values), anything
        # else as float64
        o = np.ascontiguousarray(o, dtype=np.float32 if o.dtype == np.float32 else np.float64)
        out = np.empty((4, o.shape[0]), dtype=np.float64)
        _compare_nb(self._absref, self._r2a, self._ok_a, self._ss_a, self._r2s, self._ok_s,
                    self._ss_s, self._sux, self._svx, self._fref, o, r, out, *self._ssim, self.do_hog, *self._hog,
                    self._chunks(o.shape[0]))
        return dict(zip(MEASURES, out))

    def identical(self) -> dict[str, np.ndarray]:
        """``self(ref)`` without the work: 1 everywhere, NaN where ``ref`` (Spearman) or its HOG
        features are constant; SSIM of a map with itself is exactly 1."""
        one = np.ones(self.ref.shape[0])
        hog_ok = np.ptp(self._fref, axis=1) > 0 if self.do_hog else np.zeros(len(one), dtype=bool)
        return {"spearman_abs": np.where(self._ok_a, one, np.nan),
                "spearman": np.where(self._ok_s, one, np.nan), "ssim": one.copy(),
                "hog": np.where(hog_ok, one, np.nan)}


# ----------------------------------------------------------------------------- Sobel
_SOBEL_MODES = ("reflect", "nearest", "mirror", "constant")


def sobel_edges_ref(images, reduce: str = "sum", mode: str = "reflect") -> np.ndarray:
    """Reference: ``scipy.ndimage.sobel`` per channel along both axes, hypot, then sum/max."""
    import scipy.ndimage as ndi

    check_choice(reduce, "reduce", ("sum", "max"))
    check_choice(mode, "mode", _SOBEL_MODES)
    x = as_array(images, "images", ndim=4).astype(np.float64)
    mag = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            mag[i, c] = np.hypot(ndi.sobel(x[i, c], axis=-1, mode=mode), ndi.sobel(x[i, c], axis=-2, mode=mode))
    return mag.sum(axis=1) if reduce == "sum" else mag.max(axis=1)
