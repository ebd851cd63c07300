"""Statistics of the verdicts: paired intervals, seeds, multiple comparisons, metric agreement.

numpy and scipy only; every random draw comes from ``np.random.default_rng(seed)`` with a stated
``seed`` and number of ``resamples``, so the same inputs give the same numbers on every machine.

Conventions (every function here):

* A paired comparison takes the per-unit scores of a method and of the ``random`` control on the
  same units (images, or retraining seeds). ``mean_diff`` and ``ci`` are **method - random** in
  the metric's own units; ``higher_is_better`` says which sign is "better".
* ``p_value`` is the **one-sided** p of "the method is better than random" (H0: mean difference
  no better than 0, in the metric's direction). It is the p a verdict uses and the one Holm's
  correction (:func:`holm`) adjusts; ``p_two_sided`` (H0: mean difference = 0) is kept beside it.
* The verdict rule these functions serve: "beats random" when the one-sided p (Holm-adjusted
  within a family) is below ``ALPHA = 0.025``. With the default ``level = 0.95`` that is the same
  claim as "the two-sided 95% interval lies entirely on the better side of 0" (exactly for the
  t-interval, up to the bootstrap's Monte Carlo error for BCa), so the interval drawn in the
  report and the verdict never disagree.

Which interval, and why:

* :func:`paired_interval`, ``how="bootstrap"`` (the default for images): the **BCa** paired
  bootstrap (Efron 1987; Efron & Tibshirani 1993, ch. 14 and 15.4 for the p-value) of the mean
  per-image difference, ``RESAMPLES = 10_000`` resamples of the images, seed 0. Per-image
  differences of these metrics are bounded and often skewed or discrete (ROAD's accuracy
  differences are -1/0/1 per image and fraction; areas have long tails); BCa is second-order
  accurate (coverage error O(1/n), percentile's O(1/sqrt(n))) and corrects for skewness in the
  right direction, which the plain percentile interval of a mean does not (Hall 1988). The
  acceleration of a mean has a closed form (the jackknife: skewness of the differences / 6
  sqrt(n)), so BCa costs no more than the percentile interval. The Monte Carlo error of a p near
  0.025 with 10,000 resamples is about 0.0016.
* ``how="t"``: the paired t-interval and t-test (exact for normal differences, and the better
  choice below ~20 units, where a bootstrap has too few distinct resamples). Seeds as the unit
  (:func:`seed_interval`, the retraining metrics: 2 to 5 retrainings) always use it.
* A sample with zero spread (every difference equal, to 1e-12 relative) gets the zero-width interval at that value
  and the exact sign-test p, ``0.5 ** n`` when the difference is in the better direction (1
  otherwise): no interval method has anything to resample.
* Several base models x images (:func:`seeds_by_images_interval`): the images are **crossed**
  with the models (every model is scored on the same images), so neither a t over per-seed means
  (which drops the sampling error of the shared images and has S - 1 degrees of freedom) nor a
  nested cluster bootstrap fits. The rule is the **two-way (crossed) bootstrap**: each resample
  draws S models and n images with replacement, independently, and takes the mean difference over
  all (model, image) cells drawn; percentile interval and p. It covers both sources of variation
  and is mildly conservative (it counts the model x image interaction twice; McCullagh 2000,
  "Resampling and exchangeable arrays", Bernoulli 6). With S = 1 it is the paired bootstrap
  (BCa). With 2 or 3 models the spread between models is itself estimated from 2 or 3 values:
  the interval says so by being wide, not by a formula.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["ALPHA", "LEVEL", "RESAMPLES", "PairedResult", "paired_interval", "seed_interval",
           "seeds_by_images_interval", "holm", "kendall_tau", "agreement_matrix",
           "rank_intervals"]

#: one-sided significance level of a "beats random" claim (two-sided 95% interval excludes 0)
ALPHA = 0.025
#: level of the two-sided intervals
LEVEL = 0.95
#: bootstrap resamples (images); the seed is 0 unless given
RESAMPLES = 10_000
#: rows of resamples drawn per chunk, at most this many numbers at a time (memory); a constant,
#: so the draws never depend on the machine
_CHUNK_NUMBERS = 1 << 22
HOWS = ("bootstrap", "t")
UNITS = ("images", "seeds")


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of a method with random (module doc for the conventions).

    ``ci`` is ``(nan, nan)`` and the p-values NaN when there is no interval (one unit).
    """

    mean_diff: float                 # mean of (method - random), metric units
    ci: tuple[float, float]          # two-sided interval of mean_diff at ``level``
    level: float
    p_value: float                   # one-sided: method better than random (the verdict's)
    p_two_sided: float
    n: int                           # units (images, or seeds)
    unit: str                        # "images" | "seeds"
    method: str                      # "bootstrap" | "t"
    higher_is_better: bool
    resamples: int | None = None     # bootstrap only
    seed: int | None = None          # bootstrap only
    n_models: int = 1                # base models combined (seeds_by_images_interval)
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.ci[0])

    def beats_random(self, alpha: float = ALPHA, p: float | None = None) -> bool:
        """The one-sided claim at ``alpha``, on ``p`` (e.g. Holm-adjusted) or ``p_value``."""
        p = self.p_value if p is None else p
        return bool(p is not None and not math.isnan(p) and p < alpha)

    def to_json(self) -> dict:
        """``{"mean_diff", "ci": [lo, hi], "level", "p_value", "n", "unit", "method"}``; NaN as
        None (JSON null). ``p_value`` is the one-sided p (module doc)."""
        f = lambda v: None if v is None or not math.isfinite(v) else float(v)  # noqa: E731
        return {"mean_diff": f(self.mean_diff), "ci": [f(self.ci[0]), f(self.ci[1])],
                "level": float(self.level), "p_value": f(self.p_value), "n": int(self.n),
                "unit": self.unit, "method": self.method}


# -- checks -----------------------------------------------------------------------------------

def _vector(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence of per-unit scores, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds a non-finite value at index {int(np.flatnonzero(~np.isfinite(a))[0])}; "
                         "only finite scores are allowed")
    return a


def _pair(method, random, names=("method", "random")):
    m, r = _vector(method, names[0]), _vector(random, names[1])
    if m.shape != r.shape:
        raise ValueError(f"paired scores need the same units: {names[0]} has {m.size}, {names[1]} {r.size}")
    return m, r


def _check_level(level) -> float:
    lv = float(level)
    if not 0.0 < lv < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return lv


def _check_int(v, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(v)


def _orient(d: np.ndarray, higher_is_better: bool) -> np.ndarray:
    # e > 0 means "method better"
    return d if higher_is_better else -d


def _back(lo: float, hi: float, higher_is_better: bool) -> tuple[float, float]:
    return (lo, hi) if higher_is_better else (-hi, -lo)


def _no_spread(d: np.ndarray) -> bool:
    """Every difference equal, up to rounding (``m - r`` of ``r + c`` and ``r`` is c only to
    within a few ulps): a spread below 1e-12 of the largest magnitude."""
    return float(np.ptp(d)) <= 1e-12 * max(1.0, float(np.abs(d).max()))


def _degenerate(d: np.ndarray, higher_is_better: bool, level: float, unit: str, how: str,
                **extra) -> PairedResult:
    v = float(d.mean())
    e = v if higher_is_better else -v
    n = d.size
    p1 = 0.5 ** n if e > 0 else 1.0
    p2 = min(1.0, 2 * 0.5 ** n) if e != 0 else 1.0
    return PairedResult(v, (v, v), level, p1, p2, n, unit, how, higher_is_better,
                        note="every difference equal: zero-width interval, exact sign-test p",
                        **extra)


# -- the t-interval ---------------------------------------------------------------------------

def _t(d: np.ndarray, higher_is_better: bool, level: float, unit: str) -> PairedResult:
    n = d.size
    mean = float(d.mean())
    if n == 1:
        return PairedResult(mean, (math.nan, math.nan), level, math.nan, math.nan, 1, unit, "t",
                            higher_is_better, note=f"one {unit[:-1]}: no interval and no p-value "
                            "(the spread between units cannot be estimated from one)")
    if _no_spread(d):
        return _degenerate(d, higher_is_better, level, unit, "t")
    se = float(d.std(ddof=1)) / math.sqrt(n)
    q = float(_st.t.ppf(0.5 + level / 2, n - 1))
    tval = mean / se
    e = tval if higher_is_better else -tval
    return PairedResult(mean, (mean - q * se, mean + q * se), level, float(_st.t.sf(e, n - 1)),
                        float(2 * _st.t.sf(abs(tval), n - 1)), n, unit, "t", higher_is_better)


# -- the BCa bootstrap ------------------------------------------------------------------------

def _boot_means(e: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = e.size
    rows = max(1, _CHUNK_NUMBERS // n)
    out = np.empty(resamples)
    for s in range(0, resamples, rows):
        b = min(rows, resamples - s)
        out[s:s + b] = e[rng.integers(0, n, size=(b, n))].mean(axis=1)
    return out


def _bca_p_greater(thetas: np.ndarray, z0: float, a: float) -> float:
    """One-sided BCa p of H0: theta <= 0 (Efron & Tibshirani 1993, 15.4: the level at which the
    BCa lower bound reaches 0). G(0) counts resamples <= 0, plus one (never 0)."""
    b = thetas.size
    g0 = (np.count_nonzero(thetas <= 0) + 1) / (b + 1)
    w = float(_st.norm.ppf(min(g0, 1 - 0.5 / b))) - z0
    if 1 + a * w <= 0:          # outside BCa's range: the percentile p
        return float(g0)
    return float(min(1.0, _st.norm.cdf(w / (1 + a * w) - z0)))


def _bca(e: np.ndarray, level: float, resamples: int, seed: int):
    n = e.size
    theta = float(e.mean())
    thetas = _boot_means(e, resamples, np.random.default_rng(seed))
    prop = (np.count_nonzero(thetas < theta) + 0.5 * np.count_nonzero(thetas == theta)) / resamples
    prop = min(max(prop, 0.5 / resamples), 1 - 0.5 / resamples)
    z0 = float(_st.norm.ppf(prop))
    u = e - theta                                   # jackknife influence of a mean (up to scale)
    a = float((u ** 3).sum() / (6.0 * (u ** 2).sum() ** 1.5))
    zs = _st.norm.ppf([0.5 - level / 2, 0.5 + level / 2])
    qs = _st.norm.cdf(z0 + (z0 + zs) / (1 - a * (z0 + zs)))
    lo, hi = np.quantile(thetas, qs)
    p1 = _bca_p_greater(thetas, z0, a)
    p_other = _bca_p_greater(-thetas, -z0, -a)
    return theta, float(lo), float(hi), p1, float(min(1.0, 2 * min(p1, p_other)))


def paired_interval(method, random, *, higher_is_better: bool, level: float = LEVEL,
                    how: str = "bootstrap", resamples: int = RESAMPLES, seed: int = 0,
                    unit: str = "images") -> PairedResult:
    """Interval and p of the mean paired difference ``method - random`` (module doc).

    ``method``, ``random``: per-unit scores (N,) on the same units, e.g. each image's AOPC under the
    method and under random. ``how``: "bootstrap" (BCa, ``resamples`` resamples of the units drawn
    from ``default_rng(seed)``) or "t". ``unit``: "images" or "seeds" (a label for the report).
    """
    if how not in HOWS:
        raise ValueError(f"how must be one of {HOWS}, got {how!r}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    level = _check_level(level)
    m, r = _pair(method, random)
    d = m - r
    hib = bool(higher_is_better)
    if how == "t":
        return _t(d, hib, level, unit)
    resamples = _check_int(resamples, "resamples", 100)
    seed = _check_int(seed, "seed", 0)
    if d.size == 1:
        return _t(d, hib, level, unit)
    extra = dict(resamples=resamples, seed=seed)
    if _no_spread(d):
        return _degenerate(d, hib, level, unit, "bootstrap", **extra)
    theta, lo, hi, p1, p2 = _bca(_orient(d, hib), level, resamples, seed)
    return PairedResult(float(d.mean()), _back(lo, hi, hib), level, p1, p2, d.size, unit,
                        "bootstrap", hib, **extra)


def seed_interval(method, random, *, higher_is_better: bool, level: float = LEVEL) -> PairedResult:
    """Retraining metrics (ROAR, KAR): the seeds are the unit; per-seed scores of the method and
    of random (the same retraining seeds), paired t-interval over seeds. One seed: the result has
    no interval and no p (``ci`` NaN, ``note`` says so); the verdict must then fall back on a
    rule that does not claim significance."""
    m, r = _pair(method, random)
    return _t(m - r, bool(higher_is_better), _check_level(level), "seeds")


def seeds_by_images_interval(method, random, *, higher_is_better: bool, level: float = LEVEL,
                             resamples: int = RESAMPLES, seed: int = 0) -> PairedResult:
    """Several base models x the same images: ``method``, ``random`` of shape (S models, N images).

    The two-way (crossed) bootstrap of the module doc: models and images resampled independently,
    the statistic the mean difference over the drawn cells; percentile interval, p = share of
    resamples on the wrong side of 0 (plus one, over resamples + 1). S = 1: :func:`paired_interval`
    (BCa). ``n`` is the number of images, ``n_models`` of models.
    """
    m = np.asarray(method, dtype=np.float64)
    r = np.asarray(random, dtype=np.float64)
    if m.ndim != 2 or m.shape != r.shape or m.size == 0:
        raise ValueError(f"method and random must be (S models, N images) arrays of the same shape, "
                         f"got {m.shape} and {r.shape}")
    if not (np.isfinite(m).all() and np.isfinite(r).all()):
        raise ValueError("method and random must hold finite scores only")
    s_, n = m.shape
    if s_ == 1:
        return paired_interval(m[0], r[0], higher_is_better=higher_is_better, level=level,
                               resamples=resamples, seed=seed)
    level = _check_level(level)
    resamples = _check_int(resamples, "resamples", 100)
    seed = _check_int(seed, "seed", 0)
    hib = bool(higher_is_better)
    d = m - r
    extra = dict(resamples=resamples, seed=seed, n_models=s_)
    if _no_spread(d.ravel()):
        res = _degenerate(d.ravel(), hib, level, "images", "bootstrap", **extra)
        return PairedResult(**{**res.__dict__, "n": n})
    e = _orient(d, hib)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_NUMBERS // (s_ * n))
    thetas = np.empty(resamples)
    for s in range(0, resamples, rows):
        b = min(rows, resamples - s)
        mi = rng.integers(0, s_, size=(b, s_))
        ii = rng.integers(0, n, size=(b, n))
        thetas[s:s + b] = e[mi[:, :, None], ii[:, None, :]].mean(axis=(1, 2))
    lo, hi = np.quantile(thetas, [0.5 - level / 2, 0.5 + level / 2])
    p1 = (np.count_nonzero(thetas <= 0) + 1) / (resamples + 1)
    p_other = (np.count_nonzero(thetas >= 0) + 1) / (resamples + 1)
    return PairedResult(float(d.mean()), _back(float(lo), float(hi), hib), level, float(p1),
                        float(min(1.0, 2 * min(p1, p_other))), n, "images", "bootstrap", hib,
                        note=f"two-way bootstrap over {s_} models x {n} images (percentile)",
                        **extra)


# -- multiple comparisons ---------------------------------------------------------------------

def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order.

    Sorted ascending ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``;
    rejecting ``adj < alpha`` controls the family-wise error at alpha under any dependence. The
    family is the finite entries: None / NaN (a case without a p, e.g. one seed) stay None and do
    not count in m.
    """
    vals = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
            for v in p_values]
    for v in vals:
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {v!r}")
    idx = [i for i, v in enumerate(vals) if v is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(vals)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: vals[i])):
        running = max(running, min(1.0, (m - rank) * vals[i]))
        out[i] = running
    return out


# -- agreement between metrics ----------------------------------------------------------------

def kendall_tau(scores_a: Mapping[str, float], scores_b: Mapping[str, float], *,
                higher_is_better_a: bool = True, higher_is_better_b: bool = True) -> dict:
    """Kendall's tau-b (ties counted, ``scipy.stats.kendalltau``) between the method rankings of
    two metrics: ``{"tau", "p_value", "n"}`` over the methods both score. Each metric's scores are
    oriented so that better is higher first; tau = 1: the same ranking, -1: reversed. Fewer than
    two common methods, or a metric that ties every method: tau and p None."""
    common = sorted(set(scores_a) & set(scores_b))
    a = np.array([scores_a[k] for k in common], dtype=np.float64) * (1 if higher_is_better_a else -1)
    b = np.array([scores_b[k] for k in common], dtype=np.float64) * (1 if higher_is_better_b else -1)
    if len(common) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return {"tau": None, "p_value": None, "n": len(common)}
    res = _st.kendalltau(a, b)
    f = lambda v: None if not math.isfinite(v) else float(v)  # noqa: E731
    return {"tau": f(res.statistic), "p_value": f(res.pvalue), "n": len(common)}


def agreement_matrix(scores: Mapping[str, Mapping[str, float]],
                     higher_is_better: Mapping[str, bool]) -> dict:
    """Kendall's tau between every pair of metrics' method rankings (one (dataset, model)).

    ``scores[metric][method]``: each metric's case score per method (random included or not, as
    the caller decides); ``higher_is_better[metric]``. Returns JSON-safe
    ``{"metrics": [...], "tau": [[...]], "n": [[...]], "p_value": [[...]]}`` (diagonal tau 1).
    """
    names = list(scores)
    missing = [k for k in names if k not in higher_is_better]
    if missing:
        raise ValueError(f"higher_is_better lacks the metrics {missing}")
    k = len(names)
    tau = [[None] * k for _ in range(k)]
    nn = [[0] * k for _ in range(k)]
    pv = [[None] * k for _ in range(k)]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if j < i:
                tau[i][j], nn[i][j], pv[i][j] = tau[j][i], nn[j][i], pv[j][i]
                continue
            r = kendall_tau(scores[a], scores[b], higher_is_better_a=higher_is_better[a],
                            higher_is_better_b=higher_is_better[b])
            tau[i][j], nn[i][j], pv[i][j] = r["tau"], r["n"], r["p_value"]
    return {"metrics": names, "tau": tau, "n": nn, "p_value": pv}


def rank_intervals(per_image: Mapping[str, Mapping[str, np.ndarray]],
                   higher_is_better: Mapping[str, bool], *, level: float = LEVEL,
                   resamples: int = 2000, seed: int = 0) -> dict[str, dict]:
    """The aggregate rank of each method with a bootstrap interval.

    ``per_image[metric][method]``: per-image scores (N_metric,), every method of a metric on the
    same images. The aggregate: per metric rank the methods by mean score (1 = best, ties
    averaged), average each method's ranks over the metrics that score it, and rank those means
    (1 = best). Each resample redraws every metric's images (with replacement, the same draw for
    all methods of the metric, independently between metrics) and recomputes the aggregate rank;
    the interval is the percentile interval of that rank. Returns
    ``{method: {"rank", "mean_rank", "ci": [lo, hi], "level", "resamples"}}``.
    """
    level = _check_level(level)
    resamples = _check_int(resamples, "resamples", 100)
    rng = np.random.default_rng(_check_int(seed, "seed", 0))
    methods = sorted({m for d in per_image.values() for m in d})
    if not methods:
        raise ValueError("rank_intervals needs at least one metric with one method")
    idx = {m: i for i, m in enumerate(methods)}
    total = np.zeros((resamples + 1, len(methods)))     # row 0: the observed data
    count = np.zeros(len(methods))
    for metric, d in per_image.items():
        if metric not in higher_is_better:
            raise ValueError(f"higher_is_better lacks the metric {metric!r}")
        names = list(d)
        x = np.stack([_vector(d[m], f"per_image[{metric!r}][{m!r}]") for m in names])
        n = x.shape[1]
        sign = 1.0 if higher_is_better[metric] else -1.0
        means = np.empty((resamples + 1, len(names)))
        means[0] = x.mean(axis=1)
        rows = max(1, _CHUNK_NUMBERS // n)
        for s in range(0, resamples, rows):
            b = min(rows, resamples - s)
            ii = rng.integers(0, n, size=(b, n))
            means[1 + s:1 + s + b] = x[:, ii].mean(axis=2).T
        ranks = _st.rankdata(-sign * means, axis=1)      # 1 = best
        cols = [idx[m] for m in names]
        total[:, cols] += ranks
        count[cols] += 1
    mean_rank = total / count
    agg = _st.rankdata(mean_rank, axis=1)
    lo, hi = np.quantile(agg[1:], [0.5 - level / 2, 0.5 + level / 2], axis=0)
    return {m: {"rank": float(agg[0, i]), "mean_rank": float(mean_rank[0, i]),
                "ci": [float(lo[i]), float(hi[i])], "level": level, "resamples": resamples}
            for m, i in idx.items()}
