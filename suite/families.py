"""Statistics over the cases of a run, computed when its results are written (pure functions over
results.json case records, so the report, the tests and a re-analysis agree).

* :func:`apply_holm`: within one (metric, dataset, model) the methods' "beats random" claims (and
  the sanity checks' "the maps changed" claims) form a family; Holm's step-down correction
  (``suite.stats.holm``) adjusts their one-sided p-values. Each case's ``details.paired`` gains
  ``p_holm``, and ``details.beats_random_holm`` says whether the claim survives at
  ``suite.stats.ALPHA``. The family is the cases of the run that make the claim: methods and the
  oracle (``suite.roles``), not the random baseline nor the sobel control. A case's own pass/fail
  is its per-comparison test; the corrected claim is the report's.
* :func:`agreement`: per (dataset, model), Kendall's tau between the method rankings of every
  pair of metrics (``suite.stats.agreement_matrix``), over the methods both scored.
* :func:`aggregate_ranks`: per (dataset, model), each method's mean rank over the metrics with a
  bootstrap interval (``suite.stats.rank_intervals``), from the per-image scores the cases kept.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np

Case = dict[str, Any]
#: roles whose "beats random" is a claim of the family (suite.roles)
CLAIMING_ROLES = ("method", "oracle")


def _p(case: Case) -> float | None:
    pr = (case.get("details") or {}).get("paired")
    if not isinstance(pr, dict):
        return None
    p = pr.get("p_value")
    return float(p) if isinstance(p, (int, float)) and math.isfinite(p) else None


def apply_holm(cases: Iterable[Case], roles: Mapping[str, str]) -> None:
    """Add ``p_holm`` / ``beats_random_holm`` to the cases' details, in place (module doc)."""
    from suite import stats

    families: dict[tuple, list[Case]] = defaultdict(list)
    for c in cases:
        if c.get("method") and roles.get(c["method"], "method") in CLAIMING_ROLES \
                and c.get("outcome") not in ("skipped", "error") and _p(c) is not None:
            families[(c["metric"], c["dataset"], c["model"])].append(c)
    for members in families.values():
        adjusted = stats.holm([_p(c) for c in members])
        for c, p in zip(members, adjusted):
            c["details"]["paired"]["p_holm"] = p
            c["details"]["paired"]["family_size"] = len(members)
            if not c["metric"].startswith("sanity"):
                c["details"]["beats_random_holm"] = bool(p is not None and p < stats.ALPHA)


def agreement(cases: Iterable[Case], directions: Mapping[str, bool | None]) -> dict[str, dict]:
    """``{"<dataset>/<model>": agreement_matrix}`` over the metrics with a direction and at least
    two scored methods there; random included (it is a ranked entry like any other)."""
    from suite import stats

    scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for c in cases:
        s = c.get("score")
        if (c.get("method") and isinstance(s, (int, float)) and math.isfinite(s)
                and directions.get(c["metric"]) is not None
                and c.get("outcome") not in ("skipped", "error")):
            scores[f"{c['dataset']}/{c['model']}"][c["metric"]][c["method"]] = float(s)
    out = {}
    for key, by_metric in sorted(scores.items()):
        kept = {m: v for m, v in by_metric.items() if len(v) >= 2}
        if len(kept) >= 2:
            out[key] = stats.agreement_matrix(kept, {m: bool(directions[m]) for m in kept})
    return out


def aggregate_ranks(cases: Iterable[Case], directions: Mapping[str, bool | None], *,
                    resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """``{"<dataset>/<model>": {method: {"rank", "mean_rank", "ci", ...}}}`` from the cases'
    ``details.per_image`` (every method of a metric on the same images; metrics whose methods saw
    different image counts are left out)."""
    from suite import stats

    per: dict[str, dict[str, dict[str, np.ndarray]]] = defaultdict(lambda: defaultdict(dict))
    for c in cases:
        pi = (c.get("details") or {}).get("per_image")
        if (c.get("method") and isinstance(pi, list) and pi and directions.get(c["metric"])
                is not None and c.get("outcome") not in ("skipped", "error")):
            per[f"{c['dataset']}/{c['model']}"][c["metric"]][c["method"]] = np.asarray(pi, float)
    out = {}
    for key, by_metric in sorted(per.items()):
        kept = {m: v for m, v in by_metric.items()
                if len(v) >= 2 and len({a.shape for a in v.values()}) == 1}
        if kept:
            out[key] = stats.rank_intervals(kept, {m: bool(directions[m]) for m in kept},
                                            resamples=resamples, seed=seed)
    return out
