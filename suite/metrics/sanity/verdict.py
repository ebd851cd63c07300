"""The sanity checks' verdict (a method passes when its maps change), the controls' calibration
checks, and the details a case records."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from suite.contract import Check
from suite.metrics.sanity.randomize import SanityResult
from suite.metrics.sanity.similarity import PRIMARY, SIMILARITIES

#: a method passes when its similarity after full randomization is below THRESHOLD ...
THRESHOLD = 0.5

#: ... (independent test: the mean over single-layer steps below this; chosen after measuring
#: gradient at 0.34/0.48 and guided backprop at 0.70/0.63 on digits/shapes simplecnn) ...
THRESHOLD_INDEPENDENT = 0.6

#: ... and at least MARGIN below its trained-model level
MARGIN = 0.2

RULE = (f"passes when mean {PRIMARY} after full randomization < threshold and < trained-model "
        "level - margin (independent: the mean over single-layer steps < threshold_independent)")


@dataclass(frozen=True)
class SanityVerdict:
    measure: str
    score: float            # similarity after full randomization (see the module doc)
    level: float            # the trained-model level (step 0)
    threshold: float
    margin: float
    passes: bool
    at_step: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sanity_verdict(result: SanityResult, *, measure: str = PRIMARY, threshold: float | None = None,
                   margin: float = MARGIN) -> SanityVerdict:
    """Apply the documented rule (module doc) to a result."""
    if measure not in SIMILARITIES:
        raise ValueError(f"measure {measure!r}; allowed: {SIMILARITIES}")
    ys = result.similarity[measure]
    if len(ys) < 2:
        raise ValueError("a sanity result needs the trained step and at least one randomized step")
    if threshold is None:
        threshold = (THRESHOLD_INDEPENDENT if result.test in ("independent", "noise_independent")
                     else THRESHOLD)
    if result.test in ("independent", "noise_independent"):
        score, at = float(np.mean(ys[1:])), "mean over layers"
    else:
        score, at = float(ys[-1]), result.steps[-1]
    level = float(ys[0])
    passes = score < threshold and score < level - margin
    return SanityVerdict(measure, score, level, threshold, margin, passes, at)


def calibration_checks(result: SanityResult, *, tol_one: float = 1e-9,
                       tol_zero: float = 0.15) -> list[Check]:
    """The controls' calibration (``suite.roles``): sobel = 1 under every measure at every step;
    random about 0 in rank correlation at every step. One check per measure, with the numbers."""
    out = []
    if result.method == "sobel":
        for k in SIMILARITIES:
            bad = [(s, v) for s, v in zip(result.steps, result.similarity[k]) if abs(v - 1) > tol_one]
            out.append(Check("calibration", not bad, f"sobel (model-independent) should score 1 "
                                                     f"under {k} at every step: {bad}"))
    elif result.method == "random":
        for k in ("spearman_abs", "spearman"):
            bad = [(s, v) for s, v in zip(result.steps, result.similarity[k]) if abs(v) > tol_zero]
            out.append(Check("calibration", not bad,
                             f"random maps should score about 0 under {k} at every step: {bad}"))
    else:
        raise ValueError(f"{result.method} is not a calibration control (sobel, random)")
    return out


def details(result: SanityResult, verdict: SanityVerdict | None) -> dict[str, Any]:
    """JSON-safe details for the report."""
    out = {"steps": list(result.steps), "similarity": {k: list(v) for k, v in result.similarity.items()},
           "accuracy": [None if math.isnan(a) else a for a in result.accuracy],
           "agreement": [None if math.isnan(a) else a for a in result.agreement],
           "n_images": result.n_images, "n_constant_maps": list(result.n_constant),
           "random_floor": result.random_floor, "params": result.params,
           "thresholds": {"threshold": THRESHOLD, "threshold_independent": THRESHOLD_INDEPENDENT,
                          "margin": MARGIN, "measure": PRIMARY},
           "verdict_rule": RULE}
    if verdict is not None:
        out["verdict"] = verdict.as_dict()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
