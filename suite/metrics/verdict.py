"""The one regression check every metric uses: does a method beat the random baseline?

Metrics that do not retrain (ROAD, AOPC, pixel flipping, selectivity, insertion/deletion) score
the method and the random control on the same images, so the verdict is **paired per image**
(:func:`paired_verdict`): the per-image score difference method - random, its BCa bootstrap
interval (``suite.stats.paired_interval``: 10,000 resamples, seed 0, level 0.95) and the
one-sided p of "better than random". The method beats random when that p is below
``suite.stats.ALPHA`` = 0.025, i.e. when the two-sided 95% interval lies on the better side of 0.
**Base-model seeds**: with ``--seeds`` S > 1 these metrics train one base model per seed
(``suite.seeds.base_models``: seed s -> the model trained with seed s, its maps and the
metric's noise draws with seed s); every model is scored on the same images, and the interval
and p come from the two-way bootstrap over the S models x N images
(``suite.stats.seeds_by_images_interval``); the case score is the mean over the models. With one
seed (the default below paper scale) that is the paired BCa interval above, exactly. A pretrained
or ``--checkpoint`` model is one network: its seeds vary the noise draws only, each image's
scores are averaged over them and the paired BCa interval decides. ``details.paired.n_models``
says how many models entered.
``details.paired`` holds the interval, its level and the p; within one (metric, dataset, model)
the run's "beats random" claims are also corrected as a family (Holm, ``p_holm`` and
``beats_random_holm``, added when the run's results are written: the case's own pass/fail is the
per-comparison test, the report shows both).

Retraining metrics (ROAR, KAR) keep the retraining seeds as the unit (:func:`seed_verdict`): with
two or more seeds the paired t-interval over seeds decides the same way; with one seed there is
no interval (``details.paired`` says so) and the margin rule below decides. Margin rule
(documented, tested): with per-seed scores s (method) and r (random control), and
``sign = +1`` when higher is better, else -1,

    advantage = sign * (mean(s) - mean(r))
    spread    = sqrt(var(s)/len(s) + var(r)/len(r))      (standard error of the difference;
                                                         sample variance, 0 with one seed)
    margin    = max(abs_margin, rel_margin * |mean(r)|, n_sigma * spread)
    beats     = advantage > margin

So with one seed a method must beat random by a relative margin (2% by default); with several
seeds it must also clear two standard errors of the difference. Whether a case asserts it is the
method's role (``suite.roles``: methods and the oracle do, the sobel control does not). A case
whose method does not beat random fails, unless the expectation table
(``suite.metrics.expectations``) lists the combination as a published expected failure, in which
case it is an xfail (and an xpass if it starts to win).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from suite.contract import CaseResult, Check, Picture

RULE = ("beats random when sign*(mean - mean_random) > max(abs_margin, rel_margin*|mean_random|, "
        "n_sigma*sqrt(var/n + var_random/n_random))")
PAIRED_RULE = ("beats random when the one-sided p of the paired per-image difference (BCa bootstrap, "
               "10000 resamples, seed 0) is < 0.025: the two-sided 95% interval of method - random "
               "lies on the better side of 0")
SEED_RULE = ("beats random when the one-sided p of the paired t-test over the retraining seeds is "
             "< 0.025 (two or more seeds; one seed: the margin rule)")


@dataclass(frozen=True)
class Verdict:
    score: float
    score_std: float | None
    baseline: float
    baseline_std: float | None
    higher_is_better: bool
    advantage: float        # signed: positive = better than random
    margin: float           # what the advantage had to exceed
    beats: bool
    n: int
    n_baseline: int
    paired: dict | None = None    # suite.stats.PairedResult.to_json() (+ its note), or None
    rule: str = RULE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PerSeedCurves:
    """Mixin for frozen results that hold per-seed curves, ``accuracy[s][i]`` for seed ``s`` and
    fraction ``i`` (and optionally other per-seed tables, e.g. ``probability``): the statistics
    every curve metric records and hands to ``compare_to_random``."""

    def curve_mean(self, what: str = "accuracy") -> np.ndarray:
        return np.asarray(getattr(self, what), dtype=np.float64).mean(axis=0)

    def curve_std(self, what: str = "accuracy") -> np.ndarray:
        a = np.asarray(getattr(self, what), dtype=np.float64)
        return a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1])

    def seed_scores(self) -> list[float]:
        """Per seed, the mean accuracy over the fractions (what the verdict compares)."""
        return [float(np.mean(row)) for row in self.accuracy]

    @property
    def score(self) -> float:
        return float(np.mean(self.seed_scores()))


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    xs = [float(v) for v in xs]
    if not xs:
        raise ValueError("compare_to_random needs at least one score on each side")
    if any(not math.isfinite(v) for v in xs):
        raise ValueError(f"compare_to_random got non-finite scores: {xs}")
    m = sum(xs) / len(xs)
    var = sum((v - m) ** 2 for v in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return m, var


def compare_to_random(scores: Sequence[float], random_scores: Sequence[float], *,
                      higher_is_better: bool, rel_margin: float = 0.02, abs_margin: float = 0.0,
                      n_sigma: float = 2.0) -> Verdict:
    """Compare per-seed ``scores`` of a method with the random control's (see the module doc)."""
    if rel_margin < 0 or abs_margin < 0 or n_sigma < 0:
        raise ValueError(f"margins must be >= 0, got rel_margin={rel_margin}, "
                         f"abs_margin={abs_margin}, n_sigma={n_sigma}")
    m, v = _mean_var(scores)
    mr, vr = _mean_var(random_scores)
    sign = 1.0 if higher_is_better else -1.0
    advantage = sign * (m - mr)
    spread = math.sqrt(v / len(scores) + vr / len(random_scores))
    margin = max(abs_margin, rel_margin * abs(mr), n_sigma * spread)
    std = math.sqrt(v) if len(scores) > 1 else None
    std_r = math.sqrt(vr) if len(random_scores) > 1 else None
    return Verdict(m, std, mr, std_r, higher_is_better, advantage, margin, advantage > margin,
                   len(scores), len(random_scores))


def _paired_json(res) -> dict:
    out = res.to_json()
    out["n_models"] = int(res.n_models)
    out["p_two_sided"] = None if not math.isfinite(res.p_two_sided) else float(res.p_two_sided)
    if res.resamples is not None:
        out["resamples"], out["seed"] = res.resamples, res.seed
    if res.note:
        out["note"] = res.note
    return out


def paired_verdict(method: np.ndarray, random: np.ndarray, *, higher_is_better: bool,
                   seed_scores: Sequence[float] | None = None,
                   random_seed_scores: Sequence[float] | None = None,
                   by_model: bool = False) -> Verdict:
    """The per-image paired verdict (module doc). ``method``, ``random``: per-image scores of shape
    (seeds, images) on the same images. ``by_model=False``: the rows are noise draws of one
    model, averaged per image, then compared image by image (``stats.paired_interval``).
    ``by_model=True``: row s is the base model trained with seed s (``suite.artifacts.
    base_models``), and the two-way bootstrap over models x images decides
    (``stats.seeds_by_images_interval``; with one row it is ``paired_interval`` exactly).
    ``score`` / ``baseline`` are the means of the per-seed case scores (``seed_scores``; default
    the per-image means), as before."""
    from suite import stats

    m = np.atleast_2d(np.asarray(method, dtype=np.float64))
    r = np.atleast_2d(np.asarray(random, dtype=np.float64))
    if m.shape != r.shape or m.size == 0:
        raise ValueError(f"paired_verdict: per-image scores of shapes {m.shape} and {r.shape}; "
                         "need the same (seeds, images)")
    if by_model:
        res = stats.seeds_by_images_interval(m, r, higher_is_better=higher_is_better)
    else:
        res = stats.paired_interval(m.mean(axis=0), r.mean(axis=0),
                                    higher_is_better=higher_is_better)
    s = list(seed_scores) if seed_scores is not None else [float(v) for v in m.mean(axis=1)]
    rs = list(random_seed_scores) if random_seed_scores is not None else [
        float(v) for v in r.mean(axis=1)]
    mean, var = _mean_var(s)
    mr, vr = _mean_var(rs)
    sign = 1.0 if higher_is_better else -1.0
    advantage = sign * (mean - mr)
    lo = min(sign * res.ci[0], sign * res.ci[1]) if res.has_interval else advantage
    return Verdict(mean, math.sqrt(var) if len(s) > 1 else None, mr,
                   math.sqrt(vr) if len(rs) > 1 else None, higher_is_better, advantage,
                   advantage - lo, res.beats_random(), m.shape[1], r.shape[1],
                   _paired_json(res), PAIRED_RULE)


def seed_verdict(scores: Sequence[float], random_scores: Sequence[float], *,
                 higher_is_better: bool) -> Verdict:
    """Retraining metrics: the seeds as the unit (module doc). Two or more paired seeds: the
    t-interval over seeds decides; one: the margin rule (``compare_to_random``), and
    ``paired`` says that there is no interval."""
    from suite import stats

    base = compare_to_random(scores, random_scores, higher_is_better=higher_is_better)
    if len(scores) != len(random_scores):
        return base
    res = stats.seed_interval(scores, random_scores, higher_is_better=higher_is_better)
    paired = _paired_json(res)
    if not res.has_interval:
        paired["note"] = ("one retraining seed: no interval and no p; the margin rule decides "
                          "(run --seeds 2 or more for an interval over seeds)")
        return Verdict(**{**base.as_dict(), "paired": paired})
    sign = 1.0 if higher_is_better else -1.0
    lo = min(sign * res.ci[0], sign * res.ci[1])
    return Verdict(**{**base.as_dict(), "margin": base.advantage - lo, "beats": res.beats_random(),
                      "paired": paired, "rule": SEED_RULE})


def verdict_details(verdict: Verdict) -> dict[str, Any]:
    """The verdict's numbers for a case's details (what the report shows beside the score)."""
    out = {"score_std": verdict.score_std, "baseline_std": verdict.baseline_std,
           "advantage": verdict.advantage, "margin": verdict.margin, "verdict_rule": verdict.rule}
    if verdict.paired is not None:
        out["paired"] = verdict.paired
    return out


def beats_random_check(case, verdict: Verdict, *, what: str = "") -> Check:
    """The check "the case's method beats random", with the numbers in its message.

    Expected failures are not handled here: the plugin marks them xfail at collection from the
    expectation table, so this check failing makes them xfailed, and passing, xpassed.
    """
    direction = "higher" if verdict.higher_is_better else "lower"
    why = (f"advantage {verdict.advantage:.4g} <= required margin {verdict.margin:.4g}")
    pr = verdict.paired
    if pr is not None and pr.get("p_value") is not None:
        lo, hi = pr["ci"]
        why = (f"paired over {pr['n']} {pr['unit']}: method - random {pr['mean_diff']:.4g}, "
               f"{pr['level']:.0%} interval [{lo:.4g}, {hi:.4g}], one-sided p {pr['p_value']:.3g} "
               f"(needs < 0.025)")
    return Check("beats_random", verdict.beats, (
        f"{case.method} does not beat the random baseline under {case.metric}{what} on "
        f"{case.dataset}/{case.model}: score {verdict.score:.4g} vs random {verdict.baseline:.4g} "
        f"({direction} is better; {why})"))


def conclude(case, verdict: Verdict, *, curves: Sequence[dict] = (), details: dict | None = None,
             figures: Sequence[Picture] = (), what: str = "",
             checks: Sequence[Check] = (), assert_beats: bool | None = None) -> CaseResult:
    """The result of a case whose method was compared with random: score, baseline and verdict
    recorded; "beats random" asserted when the method's role asks for it (``suite.roles``), then
    ``checks`` (e.g. the oracle rule). Not for the random case itself (its metric's own check)."""
    from suite import roles

    if assert_beats is None:
        assert_beats = roles.must_beat_random(case.method)
    asserted = [beats_random_check(case, verdict, what=what)] if assert_beats else []
    return CaseResult(score=verdict.score, higher_is_better=verdict.higher_is_better,
                      baseline={"method": "random", "score": verdict.baseline},
                      beats_baseline=verdict.beats, curves=curves,
                      details={**verdict_details(verdict), **(details or {})}, figures=figures,
                      checks=[*asserted, *checks])


# -- the benchmark's own check: the ground-truth oracle -----------------------------------------

#: the oracle must close at least this fraction of the gap between random's score and chance ...
ORACLE_MIN_GAP_CLOSED = 0.5
#: ... and beat random by at least this much accuracy (so a random baseline already at chance,
#: where any gap closes trivially, cannot pass the check)
ORACLE_MIN_ADVANTAGE = 0.05
ORACLE_RULE = (f"the oracle (ground-truth mask) must beat random by a wide margin: it closes at "
               f">= {ORACLE_MIN_GAP_CLOSED:.0%} of the gap between random's score and chance "
               f"accuracy (1/classes), and its advantage is >= {ORACLE_MIN_ADVANTAGE}")


@dataclass(frozen=True)
class OracleCheck:
    oracle: float
    random: float
    chance: float
    advantage: float       # random - oracle for lower-is-better scores (positive: oracle better)
    gap_closed: float      # advantage / |random - chance|
    passes: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rule": ORACLE_RULE}


def oracle_check(oracle_score: float, random_score: float, *, chance: float,
                 higher_is_better: bool, min_gap_closed: float = ORACLE_MIN_GAP_CLOSED,
                 min_advantage: float = ORACLE_MIN_ADVANTAGE) -> OracleCheck:
    """Apply ``ORACLE_RULE`` to accuracy-type scores whose worst value is ``chance``.

    Lower is better (ROAR, ROAD-MoRF): removing the object should bring the accuracy to chance,
    so ``gap_closed = (random - oracle) / (random - chance)``; 1 means the oracle's removal is as
    destructive as it can be. Higher is better (KAR, LeRF): mirrored. A metric whose oracle fails
    this on a dataset with ground-truth masks is broken (a ranking bug, or leakage of the removed
    region's shape), not the oracle.
    """
    if not 0.0 < chance < 1.0:
        raise ValueError(f"chance must be in (0, 1), got {chance}")
    sign = 1.0 if higher_is_better else -1.0
    advantage = sign * (oracle_score - random_score)
    room = abs(random_score - chance)
    closed = advantage / room if room > 0 else 0.0
    return OracleCheck(float(oracle_score), float(random_score), float(chance), float(advantage),
                       float(closed), bool(closed >= min_gap_closed and advantage >= min_advantage))


def oracle_rule_check(case, check: OracleCheck, what: str) -> Check:
    """The oracle case's check of ``ORACLE_RULE``, with the numbers in its message."""
    return Check("oracle", check.passes, (
        f"oracle check failed under {what} on {case.dataset}/{case.model}: oracle {check.oracle:.4g} "
        f"vs random {check.random:.4g} (chance {check.chance:.3g}): advantage "
        f"{check.advantage:.4g}, gap to chance closed {check.gap_closed:.0%}. {ORACLE_RULE}; "
        "failing it means the metric is broken, not the oracle"))
