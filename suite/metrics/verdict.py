"""The one regression check every metric uses: does a method beat the random baseline?

Rule (documented, tested): with per-seed scores s (method) and r (random control), and
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


def verdict_details(verdict: Verdict) -> dict[str, Any]:
    """The verdict's numbers for a case's details (what the report shows beside the score)."""
    return {"score_std": verdict.score_std, "baseline_std": verdict.baseline_std,
            "advantage": verdict.advantage, "margin": verdict.margin, "verdict_rule": RULE}


def beats_random_check(case, verdict: Verdict, *, what: str = "") -> Check:
    """The check "the case's method beats random", with the numbers in its message.

    Expected failures are not handled here: the plugin marks them xfail at collection from the
    expectation table, so this check failing makes them xfailed, and passing, xpassed.
    """
    direction = "higher" if verdict.higher_is_better else "lower"
    return Check("beats_random", verdict.beats, (
        f"{case.method} does not beat the random baseline under {case.metric}{what} on "
        f"{case.dataset}/{case.model}: score {verdict.score:.4g} vs random {verdict.baseline:.4g} "
        f"({direction} is better; advantage {verdict.advantage:.4g} <= required margin "
        f"{verdict.margin:.4g})"))


def conclude(case, verdict: Verdict, *, curves: Sequence[dict] = (), details: dict | None = None,
             figures: Sequence[Picture] = (), what: str = "",
             checks: Sequence[Check] = ()) -> CaseResult:
    """The result of a case whose method was compared with random: score, baseline and verdict
    recorded; "beats random" asserted when the method's role asks for it (``suite.roles``), then
    ``checks`` (e.g. the oracle rule). Not for the random case itself (its metric's own check)."""
    from suite import roles

    asserted = [beats_random_check(case, verdict, what=what)] if roles.must_beat_random(
        case.method) else []
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
