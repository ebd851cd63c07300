"""kernels.similarity: Spearman vs scipy, SSIM vs skimage, HOG vs skimage, Sobel vs ndimage."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats

from kernels.similarity import (
    hog_features,
    hog_features_ref,
    hog_pearson,
    hog_pearson_ref,
    sobel_edges_ref,
    spearman,
    ssim,
)

skmetrics = pytest.importorskip("skimage.metrics")
skfeature = pytest.importorskip("skimage.feature")

RNG = np.random.default_rng(5)


def _pairs(n=4, h=10, w=11):
    a = RNG.normal(size=(n, h, w))
    b = a + RNG.normal(scale=0.7, size=a.shape)
    if n >= 4:
        b[1] = RNG.normal(size=(h, w))  # unrelated
        a[2] = np.round(a[2])  # integer-valued: ties
        b[3] = -a[3]
    return a, b


@pytest.mark.parametrize("absolute", [False, True])
def test_spearman_matches_scipy(absolute):
    a, b = _pairs()
    got = spearman(a, b, absolute=absolute)
    f = np.abs if absolute else (lambda v: v)
    want = [scipy.stats.spearmanr(f(a[i]).ravel(), f(b[i]).ravel()).statistic for i in range(len(a))]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(spearman(a[:1], a[:1]), [1.0], atol=1e-12)


def test_spearman_ties_constant_and_errors():
    a = np.array([[1, 1, 2, 2, 3], [0, 0, 0, 0, 0]], dtype=np.int64)
    b = np.array([[5, 4, 3, 3, 1], [1, 2, 3, 4, 5]], dtype=np.int64)
    got = spearman(a, b)
    assert got[0] == pytest.approx(scipy.stats.spearmanr(a[0], b[0]).statistic, abs=1e-12)
    assert np.isnan(got[1])  # constant map: NaN (documented)
    with pytest.raises(ValueError, match="same shape"):
        spearman(a, b[:, :4])
    with pytest.raises(ValueError, match="a contains NaN"):
        spearman(np.array([[1.0, np.nan]]), np.array([[1.0, 2.0]]))


def test_spearman_hostile_inputs_match_scipy():
    """One pass of exact integer sums over doubled ranks: ties, signed zeros, infinities, huge and
    tiny magnitudes, float32 data (fewer radix passes), a pair of two-valued maps."""
    a = RNG.normal(size=(7, 9, 9))
    b = a + RNG.normal(size=a.shape)
    a[0] = 0.0
    a[0, 3, 3] = 1.0  # all tied but one
    a[1, :4] = -0.0  # -0.0 ties with 0.0
    a[1, 4:6] = 0.0
    b[2, 0, :3] = [np.inf, -np.inf, np.inf]
    a[3] = np.exp(30 * a[3])
    b[3] = 1e-300 * b[3]
    a[4] = a[4].astype(np.float32)
    b[4] = b[4].astype(np.float32)
    a[5] = a[5] > 0
    b[5] = b[5] > 0.5
    b[6] = -a[6]
    for absolute in (False, True):
        f = np.abs if absolute else (lambda v: v)
        want = [scipy.stats.spearmanr(f(a[i]).ravel(), f(b[i]).ravel()).statistic for i in range(len(a))]
        np.testing.assert_allclose(spearman(a, b, absolute=absolute), want, rtol=0, atol=1e-12)
    got32 = spearman(a[4:5].astype(np.float32), b[4:5].astype(np.float32))
    np.testing.assert_allclose(got32, spearman(a[4:5], b[4:5]), rtol=0, atol=0)
    from kernels.similarity import _spearman_nb  # the parallel path (large batches) gives the same values

    x, y = a.reshape(7, -1), b.reshape(7, -1)
    par = np.empty(7)
    _spearman_nb(x, y, False, par, 3)
    np.testing.assert_array_equal(par, spearman(a, b))


@pytest.mark.parametrize("win_size, sample_cov", [(7, True), (7, False), (5, True), (3, False)])
def test_ssim_matches_skimage(win_size, sample_cov):
    a, b = _pairs()
    got = ssim(a, b, data_range=4.0, win_size=win_size, use_sample_covariance=sample_cov)
    want = [skmetrics.structural_similarity(a[i], b[i], data_range=4.0, win_size=win_size, gaussian_weights=False,
                                            use_sample_covariance=sample_cov, K1=0.01, K2=0.03)
            for i in range(len(a))]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_ssim_identical_constant_and_errors():
    c = np.full((2, 8, 8), 0.3)
    np.testing.assert_allclose(ssim(c, c, data_range=1.0), [1.0, 1.0], atol=1e-12)
    a, b = _pairs()
    np.testing.assert_allclose(ssim(a, a, data_range=1.0), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="data_range must be a positive"):
        ssim(a, b, data_range=0)
    with pytest.raises(ValueError, match="win_size must be an odd int"):
        ssim(a, b, data_range=1.0, win_size=6)
    with pytest.raises(ValueError, match="exceeds the map size"):
        ssim(a, b, data_range=1.0, win_size=13)


@pytest.mark.parametrize("ppc, cpb", [((4, 4), (2, 2)), ((8, 8), (2, 2)), ((2, 4), (1, 2))])
def test_hog_matches_skimage(ppc, cpb):
    a, b = _pairs(n=4, h=16, w=17)
    np.testing.assert_allclose(hog_features(a, 9, ppc, cpb), hog_features_ref(a, 9, ppc, cpb), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hog_pearson(a, b, 9, ppc, cpb), hog_pearson_ref(a, b, 9, ppc, cpb), rtol=0, atol=1e-5)


@pytest.mark.parametrize("orientations", [4, 8, 9, 12])
def test_hog_orientation_edges_and_extreme_scales_match_skimage(orientations):
    """Binning without atan2: gradients lying exactly on bin edges (integer maps: 0, 45, 90, 135
    degrees and their negatives, which hit the edges of 4, 8 and 12 bins), huge and tiny scales
    (where the squares over/underflow and the kernel falls back to hypot)."""
    ints = RNG.integers(-2, 3, size=(3, 16, 16)).astype(np.float64)
    ints[1, :, ::2] = 0.0  # purely vertical / horizontal gradients
    ints[2] = np.add.outer(np.arange(16.0), np.arange(16.0))  # 45-degree gradients everywhere
    ints[2, 8:] = -ints[2, 8:]
    got = hog_features(ints, orientations, (4, 4), (2, 2))
    want = hog_features_ref(ints, orientations, (4, 4), (2, 2))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # skimage overflows at 1e150 (float32 histograms) and the squares of the gradients do too;
    # there the kernel takes hypot, and the eps of the
    # L2-Hys norm is negligible, so the features equal those of the same map at scale 1e3
    m = RNG.normal(size=(2, 16, 16))
    np.testing.assert_allclose(hog_features(1e150 * m, orientations, (4, 4), (2, 2)),
                               hog_features_ref(1e3 * m, orientations, (4, 4), (2, 2)),
                               rtol=1e-5, atol=1e-6)
    tiny = hog_features(1e-200 * m, orientations, (4, 4), (2, 2))  # eps-dominated: all ~0
    np.testing.assert_allclose(tiny, hog_features_ref(1e-200 * m, orientations, (4, 4), (2, 2)),
                               atol=1e-12)


def test_hog_pearson_constant_is_nan():
    a, _ = _pairs(n=1, h=16, w=16)
    assert np.isnan(hog_pearson(a, np.zeros_like(a), 9, (4, 4), (2, 2))[0])
    with pytest.raises(ValueError, match="too small"):
        hog_features(np.zeros((1, 6, 6)), 9, (4, 4), (2, 2))
    with pytest.raises(ValueError, match="must be even"):
        hog_features(np.zeros((1, 16, 16)), 9, (3, 3), (2, 2))


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror", "constant"])
def test_sobel_oracle_matches_ndimage_and_the_sobel_control(mode):
    """The numpy oracle against scipy.ndimage directly, and the live code (the sobel control's
    torch Sobel, edge replication = scipy's "reflect" and "nearest" for a 3x3 kernel) against it."""
    import torch

    from suite.methods.controls import sobel_magnitude

    x = RNG.random((2, 3, 6, 7)).astype(np.float32)
    x64 = x[0, 0].astype(np.float64)
    direct = np.hypot(ndi.sobel(x64, axis=0, mode=mode), ndi.sobel(x64, axis=1, mode=mode))
    np.testing.assert_allclose(sobel_edges_ref(x[:1, :1], "sum", mode)[0], direct, rtol=0, atol=1e-12)
    if mode in ("reflect", "nearest"):
        live = sobel_magnitude(torch.from_numpy(x).double()).numpy()
        for reduce, fn in (("sum", np.sum), ("max", np.max)):
            np.testing.assert_allclose(fn(live, axis=1), sobel_edges_ref(x, reduce, mode), rtol=0,
                                       atol=1e-12)
    with pytest.raises(ValueError, match="reduce must be one of"):
        sobel_edges_ref(x, "mean")


def test_map_similarity_equals_the_separate_measures():
    """MapSimilarity (reference ranks and HOG features computed once, one fused pass per call)
    gives exactly the values of spearman / ssim / hog_pearson on the same pairs, constant maps
    included; identical() is exactly a call on the reference itself."""
    from kernels.similarity import MEASURES, MapSimilarity

    a, b = _pairs(n=6, h=16, w=16)
    a[4] = 0.0          # constant reference: Spearman and HOG NaN
    b[5] = 0.25         # constant other
    a[3] = np.round(a[3])  # ties
    comp = MapSimilarity(a, data_range=2.0, win_size=5, pixels_per_cell=(4, 4))
    for k, other in enumerate((b, a, -b)):
        got = comp(other)
        assert tuple(got) == MEASURES
        want = {"spearman_abs": spearman(a, other, absolute=True), "spearman": spearman(a, other),
                "ssim": ssim(np.abs(a), np.abs(other), data_range=2.0, win_size=5),
                "hog": hog_pearson(np.abs(a), np.abs(other), 9, (4, 4), (2, 2))}
        for m in MEASURES:
            np.testing.assert_array_equal(got[m], want[m], err_msg=f"{m}, other #{k}")
    same, ident = comp(a), comp.identical()
    for m in MEASURES:
        np.testing.assert_array_equal(same[m], ident[m], err_msg=m)
    assert np.isnan(ident["spearman"][4]) and np.isnan(ident["hog"][4]) and ident["ssim"][4] == 1.0
    no_hog = MapSimilarity(a, data_range=2.0, win_size=5, pixels_per_cell=None)(b)
    assert np.isnan(no_hog["hog"]).all()
    np.testing.assert_array_equal(no_hog["ssim"], comp(b)["ssim"])
    with pytest.raises(ValueError, match="reference's shape"):
        comp(b[:3])
    full, sub = comp(b), comp(b[[5, 0, 3]], rows=[5, 0, 3])  # chosen reference rows
    for m in MEASURES:
        np.testing.assert_array_equal(sub[m], full[m][[5, 0, 3]], err_msg=m)
    with pytest.raises(ValueError, match="reference indices in"):
        comp(b[:1], rows=[6])
    with pytest.raises(ValueError, match="win_size"):
        MapSimilarity(a, win_size=4)


def test_map_similarity_spearman_merge_edge_cases():
    """The |v| order of MapSimilarity comes from one sort of v, merged without branches from both
    ends: odd numbers of values (a middle value), ties between v and -v, maps with no negatives or
    no non-negatives, signed zeros, and +-inf (where the merge's +inf sentinel would tie, so it
    falls back to one chain), and maps without negatives (|v| = v: the signed ranks copied) all
    give exactly spearman()'s values and scipy's ranks."""
    from kernels.similarity import MapSimilarity, _both_ranks

    rng = np.random.default_rng(11)
    for h, w in ((5, 7), (6, 6), (3, 3), (3, 4)):
        a = rng.normal(size=(10, h, w))
        b = rng.normal(size=(10, h, w))
        a[1] = np.abs(a[1])                       # no negatives
        b[2] = -np.abs(b[2])                      # no non-negatives
        a[3] = rng.integers(-2, 3, size=(h, w))   # ties between v and -v
        b[3] = rng.choice([-1.0, -0.0, 0.0, 1.0], size=(h, w))
        a[4].flat[0], b[4].flat[-1] = np.inf, -np.inf
        a[5].flat[:2] = [np.inf, -np.inf]
        b[5].flat[-1] = np.inf
        a[6] = np.inf                             # constant
        b[7] = rng.choice([np.inf, -np.inf, 1.0, -1.0], size=(h, w))
        a[8] = -a[8]
        b[8] = np.abs(a[8])
        a[9] = rng.choice([-np.inf, -1.0, 1.0, np.inf], size=(h, w))  # mostly infinite
        for x, y in ((a, b), (b, a)):
            got = MapSimilarity(x, win_size=3, pixels_per_cell=None)(y)
            np.testing.assert_array_equal(got["spearman"], spearman(x, y))
            np.testing.assert_array_equal(got["spearman_abs"], spearman(x, y, absolute=True))
    # the ranks themselves, down to one value
    for p in (1, 2, 3, 4, 5, 8, 33):
        for v in (rng.normal(size=p), rng.integers(-2, 3, size=p).astype(float),
                  rng.choice([-np.inf, -1.0, 0.0, 1.0, np.inf], size=p), -np.abs(rng.normal(size=p)),
                  np.abs(rng.normal(size=p)), rng.choice([-0.0, 0.0, 2.0], size=p)):
            fb, cnt = np.empty(p + 2), np.empty((8, 512), dtype=np.int64)
            idx, tmp, srt, aso, r2s, r2a = (np.empty(p, dtype=np.int64) for _ in range(6))
            ok_s, ok_a = _both_ranks(v, fb, cnt, idx, tmp, srt, aso, r2s, r2a)
            assert ok_s == (np.ptp(v) > 0) and ok_a == (np.ptp(np.abs(v)) > 0)
            if ok_s:
                np.testing.assert_array_equal(r2s, 2 * scipy.stats.rankdata(v))
            if ok_a:
                np.testing.assert_array_equal(r2a, 2 * scipy.stats.rankdata(np.abs(v)))


def _hog_scalar(m, nbins, cr, cc, br, bc):
    """HOG features by the scalar per-pixel arithmetic (kernels' _hog_pixel), accumulated in
    row-major pixel order in Python floats, then L2-Hys: what _hog_one must equal exactly."""
    from kernels.similarity import _hog_edges, _hog_pixel

    lo, hi, ce, se = _hog_edges(nbins)
    h, w = m.shape
    ncr, ncc = h // cr, w // cc
    hist = np.zeros((ncr, ncc, nbins))
    for y in range(ncr * cr):
        for x in range(ncc * cc):
            o, mag = _hog_pixel(m, y, x, lo, hi, ce, se)
            if o >= 0:
                hist[y // cr, x // cc, o] = float(hist[y // cr, x // cc, o]) + mag
    out = []
    for r in range(ncr - br + 1):
        for c in range(ncc - bc + 1):
            blk = [float(hist[r + u, c + v, o]) / float(cr * cc)
                   for u in range(br) for v in range(bc) for o in range(nbins)]
            s = 0.0
            for e in blk:
                s += e * e
            d = np.sqrt(s + 1e-10)
            blk = [min(e / d, 0.2) for e in blk]
            s = 0.0
            for e in blk:
                s += e * e
            d = np.sqrt(s + 1e-10)
            out += [e / d for e in blk]
    return np.array(out)


@pytest.mark.parametrize("orientations, ppc, cpb, shape", [(9, (4, 4), (2, 2), (16, 17)),
                                                           (8, (4, 2), (1, 2), (13, 10)),
                                                           (4, (2, 2), (2, 1), (6, 7))])
def test_hog_vectorized_passes_equal_the_scalar_arithmetic(orientations, ppc, cpb, shape):
    """_hog_one bins all pixels in branch-free passes and redoes the flagged ones (zero gradient,
    squares out of sqrt's range, on a bin edge) with _hog_pixel: the features are exactly those
    of the per-pixel scalar loop, also where the cells do not cover the whole map, with signed
    zeros, huge / tiny scales (hypot), integer maps (gradients on the edges, also off by a few
    ulps) and constant maps;
    MapSimilarity's HOG column uses the same kernel."""
    from kernels.similarity import MapSimilarity

    rng = np.random.default_rng(3)
    m = rng.normal(size=(10,) + shape)
    m[1] = rng.integers(-2, 3, size=shape)
    # gradients within a few ulps of the bin edges (where the edge test defers to atan2)
    m[9] = rng.integers(-2, 3, size=shape) * (1 + rng.integers(-3, 4, size=shape) * 2.0 ** -52)
    m[2] = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 3
    m[3] = 0.0
    m[3, ::2] = -0.0
    m[4] *= 1e-160      # squares underflow: hypot
    m[5] *= 1e160       # squares overflow: hypot
    m[6] = 0.5          # constant: all-zero features
    m[7] = np.where(rng.random(shape) < 0.5, -0.0, 0.0) + np.round(rng.normal(size=shape))
    m[8, :, : shape[1] // 2] = 0.0
    got = hog_features(m, orientations, ppc, cpb)
    for i in range(len(m)):
        np.testing.assert_array_equal(got[i], _hog_scalar(m[i], orientations, *ppc, *cpb), err_msg=str(i))
    if min(shape) >= 7:
        b = np.abs(m)
        a = b[::-1].copy()
        comp = MapSimilarity(a, data_range=1.0, orientations=orientations, pixels_per_cell=ppc,
                             cells_per_block=cpb)
        np.testing.assert_array_equal(comp(b)["hog"], hog_pearson(a, b, orientations, ppc, cpb))


def _ssim_windowwise(a, b, win, c1, c2, cov_norm):
    """Mean SSIM by sliding sums along the rows, then window by window (columns of windows
    outer), the arithmetic the kernels must reproduce exactly (Python floats)."""
    h, w = a.shape
    oh, ow = h - win + 1, w - win + 1
    npx = float(win * win)
    hs = np.zeros((5, h, ow))
    for y in range(h):
        s = [0.0] * 5
        for k in range(win):
            u, v = float(a[y, k]), float(b[y, k])
            s = [s[0] + u, s[1] + v, s[2] + u * u, s[3] + v * v, s[4] + u * v]
        hs[:, y, 0] = s
        for xo in range(1, ow):
            u, v = float(a[y, xo + win - 1]), float(b[y, xo + win - 1])
            u0, v0 = float(a[y, xo - 1]), float(b[y, xo - 1])
            s = [s[0] + (u - u0), s[1] + (v - v0), s[2] + (u * u - u0 * u0), s[3] + (v * v - v0 * v0),
                 s[4] + (u * v - u0 * v0)]
            hs[:, y, xo] = s
    total = 0.0
    for xo in range(ow):
        m = [0.0] * 5
        for k in range(win):
            m = [m[q] + float(hs[q, k, xo]) for q in range(5)]
        for yo in range(oh):
            if yo > 0:
                m = [m[q] + (float(hs[q, yo + win - 1, xo]) - float(hs[q, yo - 1, xo])) for q in range(5)]
            ux, uy = m[0] / npx, m[1] / npx
            vx = cov_norm * (m[2] / npx - ux * ux)
            vy = cov_norm * (m[3] / npx - uy * uy)
            vxy = cov_norm * (m[4] / npx - ux * uy)
            total += ((2.0 * ux * uy + c1) * (2.0 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return total / (oh * ow)


@pytest.mark.parametrize("shape, win", [((12, 15), 7), ((9, 8), 3), ((10, 10), 5)])
def test_ssim_equals_the_windowwise_arithmetic(shape, win):
    """ssim() (window sums a row of windows at a time, vectorized) and MapSimilarity (the
    reference's window means and variances computed once, in the constructor) give exactly the
    values of the window-by-window loop, constant maps and ties included."""
    from kernels.similarity import MapSimilarity

    rng = np.random.default_rng(7)
    a = rng.random((5,) + shape)
    b = np.clip(a + rng.normal(scale=0.3, size=a.shape), 0, 1)
    a[1] = 0.25
    b[2] = 0.0
    a[3] = np.round(a[3] * 3) / 3
    b[4] = rng.random(shape) ** 8
    npx = win * win
    c1, c2, cov = 0.01 ** 2, 0.03 ** 2, npx / (npx - 1.0)
    want = [_ssim_windowwise(a[i], b[i], win, c1, c2, cov) for i in range(len(a))]
    np.testing.assert_array_equal(ssim(a, b, data_range=1.0, win_size=win), want)
    got = MapSimilarity(a, data_range=1.0, win_size=win, pixels_per_cell=None)(b)["ssim"]
    np.testing.assert_array_equal(got, want)
    want_nosample = [_ssim_windowwise(a[i], b[i], win, 4 * c1, 4 * c2, 1.0) for i in range(len(a))]
    np.testing.assert_array_equal(ssim(a, b, data_range=2.0, win_size=win, use_sample_covariance=False),
                                  want_nosample)


def test_map_similarity_takes_float32_maps_as_they_are():
    """float32 maps are compared without a float64 copy (widened exactly inside): the same
    values as their float64 copy, for all four measures."""
    from kernels.similarity import MEASURES, MapSimilarity

    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 16, 16)).astype(np.float32)
    b = rng.normal(size=(6, 16, 16)).astype(np.float32)
    b[1] = np.round(b[1])
    b[2] = 0.0
    comp = MapSimilarity(a, data_range=2.0, pixels_per_cell=(4, 4))
    got, want = comp(b), comp(b.astype(np.float64))
    for m in MEASURES:
        np.testing.assert_array_equal(got[m], want[m], err_msg=m)
    sub = comp(b[[3, 0]], rows=[3, 0])
    for m in MEASURES:
        np.testing.assert_array_equal(sub[m], want[m][[3, 0]], err_msg=m)


def test_pearson_of_tiny_and_huge_vectors_is_the_scaled_value():
    # sxx * syy under- / overflows for features ~1e-160 / ~1e160: the correlation is scale-free,
    # so it must equal the value for the same vectors scaled by an exact power of two
    from kernels.similarity import _pearson

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=64), rng.normal(size=64)
    y += 0.5 * x
    r = _pearson(x, y)
    for k in (-500, 500):   # squares ~1e-301 (product underflows) and ~1e301 (overflows)
        got = _pearson(x * 2.0 ** k, y * 2.0 ** k)
        assert np.isfinite(got) and got == pytest.approx(r, rel=1e-12), k
    tiny = np.abs(rng.normal(size=(3, 16, 16))) * 1e-160
    h = hog_pearson(tiny, tiny[::-1].copy(), 9, (4, 4), (2, 2))
    assert np.isfinite(h).all()
