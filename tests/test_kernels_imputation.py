"""kernels.imputation: ROAD noisy linear imputation against a direct spsolve of the system."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from kernels.imputation import impute, impute_ref, normal_noise, normal_noise_ref

# The counter-based noise wraps uint64 arithmetic on purpose; as plain Python (NUMBA_DISABLE_JIT=1)
# numpy scalars warn about it.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

RNG = np.random.default_rng(2024)


def _direct_solve(img, removed):
    """Independent check: the normalised system x_i - sum_j (w_j / W_i) x_j = known part, built
    with explicit loops for one (C, H, W) image, solved per channel with spsolve."""
    c, h, w = img.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    uid = {p: i for i, p in enumerate(unknown)}
    a = scipy.sparse.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), c))
    for i, (y, x) in enumerate(unknown):
        nb = [(y + dy, x + dx, 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
        nb = [(yy, xx, wt) for yy, xx, wt in nb if 0 <= yy < h and 0 <= xx < w]
        total = sum(wt for _, _, wt in nb)
        a[i, i] = 1.0
        for yy, xx, wt in nb:
            if removed[yy, xx]:
                a[i, uid[(yy, xx)]] -= wt / total
            else:
                b[i] += wt / total * img[:, yy, xx]
    out = img.astype(np.float64).copy()
    a = a.tocsc()
    for ch in range(c):
        sol = scipy.sparse.linalg.spsolve(a, b[:, ch])
        for i, (y, x) in enumerate(unknown):
            out[ch, y, x] = sol[i]
    return out


def _case(n=3, c=2, h=7, w=6, frac=0.5):
    x = RNG.random((n, c, h, w)).astype(np.float32)
    m = RNG.random((n, h, w)) < frac
    m[0, 1:5, 1:4] = True  # a big hole
    return x, m


def test_matches_direct_spsolve():
    x, m = _case()
    got = impute(x, m, noise_std=0.0)
    for i in range(len(x)):
        np.testing.assert_allclose(got[i], _direct_solve(x[i], m[i]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, impute_ref(x, m, noise_std=0.0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("frac", [0.1, 0.5, 0.9])
def test_matches_reference_with_noise(frac):
    x, m = _case(n=4, c=3, h=9, w=8, frac=frac)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(impute(x64, m, 0.05, seed=3), impute_ref(x64, m, 0.05, seed=3), rtol=0, atol=1e-9)
    np.testing.assert_allclose(impute(x, m, 0.05, seed=3), impute_ref(x, m, 0.05, seed=3), rtol=0, atol=1e-5)


def test_kept_pixels_untouched_and_dtype():
    x, m = _case()
    out = impute(x, m, noise_std=0.01, seed=1)
    assert out.dtype == np.float32 and out.shape == x.shape
    keep = np.broadcast_to(~m[:, None], x.shape)
    np.testing.assert_array_equal(out[keep], x[keep])
    assert (out[~keep] != x[~keep]).any()


def test_constant_image_stays_constant():
    x = np.full((2, 3, 6, 6), 0.7, np.float32)
    m = RNG.random((2, 6, 6)) < 0.6
    m[:, 0, 0] = False
    np.testing.assert_allclose(impute(x, m, noise_std=0.0), x, rtol=0, atol=1e-6)


def test_linear_ramp_reproduced_in_interior_holes():
    h, w = 8, 9
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([0.3 * yy - 0.2 * xx + 1.0, 0.05 * xx]).astype(np.float64)[None]
    m = np.zeros((1, h, w), bool)
    m[0, 2:5, 3:7] = True
    m[0, 6, 1] = True
    np.testing.assert_allclose(impute(ramp, m, noise_std=0.0), ramp, rtol=0, atol=1e-10)


def test_nothing_and_everything_removed():
    x, _ = _case(n=2)
    np.testing.assert_array_equal(impute(x, np.zeros((2, 7, 6), bool)), x)
    out = impute(x, np.ones((2, 7, 6), bool), noise_std=0.0, fallback=[0.25, -1.0])
    np.testing.assert_array_equal(out[:, 0], 0.25)
    np.testing.assert_array_equal(out[:, 1], -1.0)
    ref = impute_ref(x, np.ones((2, 7, 6), bool), noise_std=0.1, fallback=0.5)
    np.testing.assert_allclose(impute(x, np.ones((2, 7, 6), bool), noise_std=0.1, fallback=0.5), ref, atol=1e-6)


def test_single_pixel_image():
    x = np.array([[[[3.0]]]], np.float32)
    np.testing.assert_array_equal(impute(x, np.array([[[True]]]), noise_std=0.0, fallback=1.5), [[[[1.5]]]])


def test_noise_seeded_batch_independent_and_scaled():
    x, m = _case(n=3)
    a = impute(x, m, noise_std=0.01, seed=4)
    np.testing.assert_array_equal(a, impute(x, m, noise_std=0.01, seed=4))
    assert not np.array_equal(a, impute(x, m, noise_std=0.01, seed=5))
    np.testing.assert_array_equal(impute(x[[2]], m[[2]], noise_std=0.01, seed=4, ids=[2]), a[[2]])
    z = normal_noise(np.arange(4), 9, 5000)
    np.testing.assert_allclose(z, normal_noise_ref(np.arange(4), 9, 5000), rtol=0, atol=1e-12)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.05


def test_errors():
    x, m = _case()
    bad = x.copy()
    bad[1, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"images contains NaN .*\(1, 0, 2, 2\)"):
        impute(bad, m)
    with pytest.raises(ValueError, match="mask must have dtype bool"):
        impute(x, m.astype(np.uint8))
    with pytest.raises(ValueError, match=r"mask must have shape \(N, H, W\)"):
        impute(x, m[:, :5])
    with pytest.raises(ValueError, match="noise_std must be finite and >= 0"):
        impute(x, m, noise_std=-1.0)
    with pytest.raises(ValueError, match="seed must be"):
        impute(x, m, seed=1.5)
    with pytest.raises(ValueError, match="fallback must be"):
        impute(x, m, fallback=[1.0, 2.0, 3.0])


def _solve_with(x, m, maxit, noise_std=0.0, solver=None):
    """impute() with the solver forced: CG with the iteration cap ``maxit`` (falling back to the
    exact direct solver when it has not converged), or ``maxit=0``: every image the exact direct
    solver (banded Cholesky)."""
    import kernels.imputation as imp

    if solver is None:
        solver = imp._DIRECT if maxit == 0 else imp._CG
    n, c, h, w = x.shape
    out = np.empty((n, c, h * w), x.dtype)
    imp._impute_nb(x.reshape(n, c, h * w), m.reshape(n, h * w), h, w, noise_std, 0, np.arange(n),
                   np.zeros(c), out, imp._CG_TOL, maxit, solver, 2)
    return out.reshape(x.shape)


@pytest.mark.parametrize("frac", [0.5, 0.97])
def test_iterative_solver_matches_exact_fallback(frac):
    x = RNG.random((3, 3, 12, 13))
    m = RNG.random((3, 12, 13)) < frac
    m[2] = True
    m[2, 5, 6] = False  # one known pixel: badly conditioned
    exact = _solve_with(x, m, maxit=0, noise_std=0.02)
    np.testing.assert_allclose(_solve_with(x, m, maxit=300, noise_std=0.02), exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(_solve_with(x, m, maxit=3, noise_std=0.02), exact, rtol=0, atol=1e-10)  # falls back
    np.testing.assert_allclose(impute(x, m, 0.02), exact, rtol=0, atol=1e-10)
    x32 = x.astype(np.float32)  # float32 images: looser CG tolerance, still below float32 resolution
    np.testing.assert_allclose(impute(x32, m, 0.02), _solve_with(x32, m, maxit=0, noise_std=0.02), rtol=0, atol=1e-7)


@pytest.mark.parametrize("c,h,w", [(1, 9, 8), (2, 7, 11), (3, 10, 9), (4, 8, 8), (3, 1, 12), (2, 12, 1)])
@pytest.mark.parametrize("frac", [0.2, 0.6, 0.95])
def test_direct_and_cg_solvers_match_reference(c, h, w, frac):
    """Both solvers, forced, against the spsolve reference: channel counts that take the three-at-a-
    time and the one-at-a-time triangular solves, one-pixel-wide images, sparse to almost full masks."""
    x = RNG.random((5, c, h, w))
    m = RNG.random((5, h, w)) < frac
    m[0] = False
    m[0, h // 2:, : max(1, w // 2)] = True  # a solid block
    m[1] = True
    m[1, 0, 0] = False  # one known pixel
    m[2] = True  # all removed: fallback
    ref = impute_ref(x, m, noise_std=0.03, seed=0, fallback=0.25)
    for solver in ("direct", "cg"):
        import kernels.imputation as imp

        n = len(x)
        out = np.empty((n, c, h * w))
        imp._impute_nb(x.reshape(n, c, h * w), m.reshape(n, h * w), h, w, 0.03, 0, np.arange(n),
                       np.full(c, 0.25), out, imp._CG_TOL, imp._CG_MAXIT,
                       imp._DIRECT if solver == "direct" else imp._CG, 2)
        np.testing.assert_allclose(out.reshape(x.shape), ref, rtol=0, atol=1e-9, err_msg=solver)


def test_direct_solver_zero_right_hand_side_and_float32():
    """Known neighbours all 0: the solution is exactly 0 (the factorisation is skipped); float32
    images: the exact solution rounded once, so within a float32 ulp of the reference."""
    x = np.zeros((2, 3, 9, 9))
    x[1, 1] = RNG.random((9, 9))  # one channel non-zero
    m = RNG.random((2, 9, 9)) < 0.5
    out = _solve_with(x, m, maxit=0)
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[1, [0, 2]], 0.0)
    np.testing.assert_allclose(out, impute_ref(x, m, noise_std=0.0), rtol=0, atol=1e-12)
    x32 = RNG.random((3, 3, 16, 16)).astype(np.float32)
    m32 = RNG.random((3, 16, 16)) < 0.7
    got = _solve_with(x32, m32, maxit=0, noise_std=0.01)
    assert got.dtype == np.float32
    ref = impute_ref(x32.astype(np.float64), m32, noise_std=0.01)
    np.testing.assert_allclose(got, ref, rtol=0, atol=6e-8)


def test_scratch_reused_across_images_changes_nothing():
    """One chunk (scratch shared by all images, of every kind: none, some, all removed, zero
    right-hand side) gives the same bits as one chunk per image, for both solvers."""
    import kernels.imputation as imp

    x = RNG.random((6, 3, 11, 10)).astype(np.float32)
    x[3] = 0.0
    m = RNG.random((6, 11, 10)) < np.array([0.0, 0.3, 0.9, 0.5, 1.1, 0.05])[:, None, None]
    n, c, h, w = x.shape
    for solver in (imp._DIRECT, imp._CG, imp._AUTO):
        outs = []
        for nchunks in (1, n):
            out = np.empty((n, c, h * w), np.float32)
            imp._impute_nb(x.reshape(n, c, h * w), m.reshape(n, h * w), h, w, 0.01, 3, np.arange(n),
                           np.zeros(c), out, imp._CG_TOL32, imp._CG_MAXIT, solver, nchunks)
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1])


def test_solver_choice_by_estimated_cost():
    """Small images (the suite's 16x16 and 32x32) take the direct solver; large ones, where the
    banded factorisation grows like W^4, take CG."""
    from kernels.imputation import _direct_cheaper

    assert _direct_cheaper(512, 33, 3, 32, 32)       # 3x32x32, half removed
    assert _direct_cheaper(128, 17, 1, 16, 16)       # 1x16x16, half removed
    assert not _direct_cheaper(25088, 225, 3, 224, 224)  # 3x224x224, half removed
    assert _direct_cheaper(50, 3, 3, 224, 224)       # a few scattered pixels: narrow band
