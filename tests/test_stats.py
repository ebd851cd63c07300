"""suite.stats: known answers, scipy references, calibration by simulation, Holm, Kendall's tau."""
import math

import numpy as np
import pytest
from scipy import stats

from suite import stats as S

RNG_SEED = 2024  # with the test's name, the seed of its own generator (conftest's rng)


# -- known answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", S.HOWS)
@pytest.mark.parametrize("hib", [True, False])
def test_constant_difference_gives_a_zero_width_interval_at_it(how, hib, rng):
    r = rng.normal(size=30)
    res = S.paired_interval(r + 0.25, r, higher_is_better=hib, how=how)
    assert res.mean_diff == pytest.approx(0.25, abs=1e-12)
    assert res.ci[0] == res.ci[1] == pytest.approx(0.25, abs=1e-12)
    # the exact sign test: 0.5 ** 30 in the better direction, 1 in the worse one
    assert res.p_value == (0.5 ** 30 if hib else 1.0)
    zero = S.paired_interval(r, r, higher_is_better=hib, how=how)
    assert zero.ci == (0.0, 0.0) and zero.p_value == 1.0 and zero.p_two_sided == 1.0


@pytest.mark.parametrize("hib", [True, False])
def test_t_interval_equals_scipy(hib, rng):
    m, r = rng.normal(0.2, 1, 25), rng.normal(0, 1, 25)
    res = S.paired_interval(m, r, higher_is_better=hib, how="t", level=0.9)
    ref = stats.ttest_rel(m, r, alternative="greater" if hib else "less")
    two = stats.ttest_rel(m, r)
    ci = two.confidence_interval(0.9)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.p_two_sided == pytest.approx(two.pvalue, rel=1e-12)
    assert res.ci == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert res.mean_diff == pytest.approx((m - r).mean(), rel=1e-12)
    assert (res.n, res.unit, res.method, res.level) == (25, "images", "t", 0.9)


def test_bootstrap_is_reproducible_and_near_the_t_interval(rng):
    m, r = rng.normal(0.3, 1, 200), rng.normal(0, 1, 200)
    a = S.paired_interval(m, r, higher_is_better=True)
    assert a == S.paired_interval(m, r, higher_is_better=True)            # same seed, same numbers
    assert a.ci != S.paired_interval(m, r, higher_is_better=True, seed=1).ci
    assert (a.method, a.resamples, a.seed) == ("bootstrap", S.RESAMPLES, 0)
    t = S.paired_interval(m, r, higher_is_better=True, how="t")
    # normal data, n = 200: BCa and t agree to about a tenth of the half width
    half = (t.ci[1] - t.ci[0]) / 2
    assert abs(a.ci[0] - t.ci[0]) < 0.1 * half and abs(a.ci[1] - t.ci[1]) < 0.1 * half
    # lower-is-better: the same interval of method - random, the one-sided p reversed
    low = S.paired_interval(m, r, higher_is_better=False)
    assert low.ci == pytest.approx(a.ci, rel=1e-12)
    assert a.p_value + low.p_value == pytest.approx(1, abs=2 / S.RESAMPLES)   # the two tails
    assert low.p_value > 0.5 > a.p_value                                     # mean diff > 0
    assert low.p_two_sided == pytest.approx(a.p_two_sided, rel=1e-9)


def test_bootstrap_percentiles_by_hand():
    """BCa on a symmetric sample (skewness 0, so a = 0) with the bias correction z0 computed from
    the same resamples: the bounds are the quantiles of the resampled means at
    Phi(2 z0 +- z_{0.975})."""
    e = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, -3.0, 0.5, -0.5, 4.0, -4.0])
    res = S.paired_interval(e, np.zeros_like(e), higher_is_better=True, resamples=2000, seed=3)
    rng = np.random.default_rng(3)
    th = e[rng.integers(0, e.size, size=(2000, e.size))].mean(axis=1)
    prop = (np.sum(th < e.mean()) + 0.5 * np.sum(th == e.mean())) / 2000
    z0 = stats.norm.ppf(prop)
    z = stats.norm.ppf(0.975)
    want = np.quantile(th, stats.norm.cdf([2 * z0 - z, 2 * z0 + z]))
    assert res.ci == pytest.approx(tuple(want), rel=1e-12)


def test_to_json_has_exactly_the_contract():
    res = S.paired_interval([1.0, 2.0, 4.0], [0.0, 1.0, 1.0], higher_is_better=True, how="t")
    j = res.to_json()
    assert list(j) == ["mean_diff", "ci", "level", "p_value", "n", "unit", "method"]
    assert j["ci"] == list(res.ci) and j["p_value"] == res.p_value and j["unit"] == "images"
    one = S.seed_interval([0.5], [0.6], higher_is_better=False)
    assert not one.has_interval and "no interval" in one.note
    assert one.to_json() == {"mean_diff": pytest.approx(-0.1), "ci": [None, None], "level": 0.95,
                             "p_value": None, "n": 1, "unit": "seeds", "method": "t"}
    assert not one.beats_random()


def test_seed_interval_is_the_paired_t_over_seeds():
    m, r = [0.80, 0.82, 0.78], [0.90, 0.91, 0.93]
    res = S.seed_interval(m, r, higher_is_better=False)
    ref = stats.ttest_rel(m, r, alternative="less")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12) and res.unit == "seeds"
    assert res.ci == pytest.approx(tuple(stats.ttest_rel(m, r).confidence_interval(0.95)), rel=1e-12)


def test_seeds_by_images(rng):
    m, r = rng.normal(0.4, 1, (1, 60)), rng.normal(0, 1, (1, 60))
    assert S.seeds_by_images_interval(m, r, higher_is_better=True) == \
        S.paired_interval(m[0], r[0], higher_is_better=True)                 # one model: BCa
    m3 = np.concatenate([m, m + 0.1, m - 0.1])
    r3 = np.concatenate([r, r, r])
    res = S.seeds_by_images_interval(m3, r3, higher_is_better=True, resamples=2000)
    assert (res.n, res.n_models, res.method) == (60, 3, "bootstrap")
    assert res.mean_diff == pytest.approx((m3 - r3).mean())
    assert res.ci[0] < res.mean_diff < res.ci[1]
    assert res == S.seeds_by_images_interval(m3, r3, higher_is_better=True, resamples=2000)
    # model-to-model spread widens the interval over the same images
    wide = S.seeds_by_images_interval(np.concatenate([m, m + 1.0, m - 1.0]), r3,
                                      higher_is_better=True, resamples=2000)
    assert wide.ci[1] - wide.ci[0] > 1.5 * (res.ci[1] - res.ci[0])
    const = S.seeds_by_images_interval(r3 + 0.5, r3, higher_is_better=True)
    assert const.ci == pytest.approx((0.5, 0.5)) and const.n == 60


def test_errors():
    with pytest.raises(ValueError, match="same units"):
        S.paired_interval([1.0, 2.0], [1.0], higher_is_better=True)
    with pytest.raises(ValueError, match="non-finite value at index 1"):
        S.paired_interval([1.0, math.nan], [1.0, 2.0], higher_is_better=True)
    with pytest.raises(ValueError, match="how must be one of"):
        S.paired_interval([1.0, 2.0], [1.0, 2.0], higher_is_better=True, how="wilcoxon")
    with pytest.raises(ValueError, match="level must be in"):
        S.paired_interval([1.0, 2.0], [1.0, 2.0], higher_is_better=True, level=95)
    with pytest.raises(ValueError, match="resamples must be an int >= 100"):
        S.paired_interval([1.0, 2.0], [1.0, 3.0], higher_is_better=True, resamples=10)
    with pytest.raises(ValueError, match=r"\(S models, N images\)"):
        S.seeds_by_images_interval([1.0, 2.0], [1.0, 2.0], higher_is_better=True)
    with pytest.raises(ValueError, match=r"p-values must be in \[0, 1\]"):
        S.holm([0.1, 1.5])


# -- calibration by simulation ----------------------------------------------------------------

DRAWS = {"exponential": lambda g, n: g.exponential(1.0, n),              # skewed
         "bernoulli": lambda g, n: (g.random(n) < 0.7).astype(float)}    # discrete, many ties
REPS, N = 200, 40
#: a calibrated one-sided test at ALPHA rejects Binomial(200, 0.025) times (mean 5); this is the
#: count it exceeds with probability 0.001
TOLERANCE = int(stats.binom.isf(0.001, REPS, S.ALPHA))


@pytest.mark.parametrize("how", S.HOWS)
@pytest.mark.parametrize("dist", sorted(DRAWS))
def test_a_method_equal_to_random_is_rarely_declared_better(dist, how):
    draw = DRAWS[dist]
    better = {True: 0, False: 0}
    for rep in range(REPS):
        g = np.random.default_rng([17, rep])
        m, r = draw(g, N), draw(g, N)
        for hib in better:
            better[hib] += S.paired_interval(m, r, higher_is_better=hib, how=how, resamples=1000,
                                             seed=rep).beats_random()
    assert TOLERANCE == 13
    assert better[True] <= TOLERANCE and better[False] <= TOLERANCE, better


@pytest.mark.parametrize("how", S.HOWS)
def test_a_planted_effect_is_detected(how):
    hits = 0
    for rep in range(REPS):
        g = np.random.default_rng([18, rep])
        r = g.exponential(1.0, N)
        m = g.exponential(1.0, N) + 1.0              # one standard deviation better per image
        hits += S.paired_interval(m, r, higher_is_better=True, how=how, resamples=1000,
                                  seed=rep).beats_random()
    assert hits >= 0.95 * REPS, hits


# -- Holm -------------------------------------------------------------------------------------

def test_holm_by_hand():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max so far 0.06
    assert S.holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert S.holm([0.5, 0.6]) == [1.0, 1.0]
    assert S.holm([0.02]) == [0.02]
    assert S.holm([float("nan"), 0.01, 0.01]) == [None, 0.02, 0.02]   # ties: both x2
    assert S.holm([]) == []


# -- Kendall's tau, agreement, rank intervals ---------------------------------------------------

def test_kendall_tau_known_answers():
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "w": 4.0}
    assert S.kendall_tau(a, a)["tau"] == pytest.approx(1.0)
    rev = {k: -v for k, v in a.items()}
    assert S.kendall_tau(a, rev)["tau"] == pytest.approx(-1.0)
    # lower-is-better metric with reversed scores: the same ranking
    assert S.kendall_tau(a, rev, higher_is_better_b=False)["tau"] == pytest.approx(1.0)
    # one discordant pair of 6: (5 - 1) / 6
    swap = {"x": 2.0, "y": 1.0, "z": 3.0, "w": 4.0}
    assert S.kendall_tau(a, swap)["tau"] == pytest.approx(4 / 6)
    # ties (tau-b): scipy's value
    tie = {"x": 1.0, "y": 1.0, "z": 3.0, "w": 4.0, "v": 0.0}
    want = stats.kendalltau([1, 2, 3, 4], [1, 1, 3, 4]).statistic
    got = S.kendall_tau(a, tie)
    assert got["tau"] == pytest.approx(want) and got["n"] == 4
    assert S.kendall_tau({"x": 1.0}, {"x": 2.0})["tau"] is None
    assert S.kendall_tau(a, {k: 0.0 for k in a})["tau"] is None


def test_agreement_matrix():
    scores = {"aopc": {"x": 1.0, "y": 2.0, "z": 3.0}, "road": {"x": 0.9, "y": 0.5, "z": 0.1},
              "sanity": {"x": 3.0, "y": 1.0, "z": 2.0}}
    hib = {"aopc": True, "road": False, "sanity": True}
    out = S.agreement_matrix(scores, hib)
    assert out["metrics"] == ["aopc", "road", "sanity"]
    tau = np.array(out["tau"], dtype=float)
    np.testing.assert_allclose(np.diag(tau), 1.0)
    np.testing.assert_allclose(tau, tau.T)
    assert tau[0, 1] == pytest.approx(1.0) and tau[0, 2] == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="lacks the metrics"):
        S.agreement_matrix(scores, {"aopc": True})


def test_rank_intervals(rng):
    n = 300
    base = rng.normal(size=n)
    per = {"m1": {"good": base + 2.0, "mid": base + 1.0, "bad": base},
           "m2": {"good": base - 2.0, "mid": base - 0.001, "bad": base}}   # lower is better
    out = S.rank_intervals(per, {"m1": True, "m2": False}, resamples=500)
    assert out["good"]["rank"] == 1.0 and out["good"]["ci"] == [1.0, 1.0]
    # "mid" is clearly second on m1 and a coin flip against "bad" on m2: its rank is uncertain
    assert out["mid"]["rank"] == 2.0 and out["bad"]["rank"] == 3.0
    assert out == S.rank_intervals(per, {"m1": True, "m2": False}, resamples=500)
    noisy = {"m": {"a": rng.normal(size=20), "b": rng.normal(size=20)}}
    iv = S.rank_intervals(noisy, {"m": True}, resamples=500)
    assert iv["a"]["ci"] == [1.0, 2.0] and iv["b"]["ci"] == [1.0, 2.0]
