"""Pure helpers over a results.json dict: grouping, ranking, counts, formatting.

Everything here takes plain JSON-like data (``dict``/``list``/numbers/``None``) and returns plain
data, so the HTML page, the CSV and the terminal summary all agree on one reading of the records.
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any, Iterable

Case = dict[str, Any]
GroupKey = tuple[str, str, str]  # (metric, dataset, model)

OUTCOMES = ("passed", "failed", "xfailed", "xpassed", "skipped")   # "error" counted when present
OUTCOME_LABELS = {
    "passed": "passed",
    "failed": "failed (verdict)",
    "error": "error (not a verdict)",
    "xfailed": "xfailed (expected failure)",
    "xpassed": "xpassed (unexpectedly passed)",
    "skipped": "skipped",
}
BASELINE_METHOD = "random"
PLAIN_METRICS = ("accuracy", "maps")  # shown as a plain table, not ranked by method


def text(value: Any, missing: str = "—") -> str:
    """A field as display text; ``None`` becomes ``missing``."""
    return missing if value is None else str(value)


def as_score(value: Any) -> float | None:
    """A finite float, or ``None`` for missing, non-numeric, NaN or infinite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; ``—`` when missing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}g}"


def fmt_signed(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}g}"


def fmt_duration(seconds: Any) -> str:
    s = as_score(seconds)
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_duration_s(run: dict) -> float | None:
    """Seconds between run.started and run.finished, or ``None`` if either is missing/invalid."""
    try:
        start = datetime.fromisoformat(run["started"])
        end = datetime.fromisoformat(run["finished"])
        return (end - start).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def cases_of(results: dict) -> list[Case]:
    return [c for c in results.get("cases") or [] if isinstance(c, dict)]


def outcome_counts(results: dict) -> dict[str, int]:
    """Counts per outcome: the five standard ones always present, others (e.g. ``error``) added."""
    counts = Counter(text(c.get("outcome"), "unknown") for c in cases_of(results))
    out = {k: counts.pop(k, 0) for k in OUTCOMES}
    out.update(sorted(counts.items()))
    return out


def details(case: Case) -> dict:
    d = case.get("details")
    return d if isinstance(d, dict) else {}


def expectation(case: Case) -> dict | None:
    e = details(case).get("expectation")
    return e if isinstance(e, dict) else None


def is_plain(metric: str, groups: dict[tuple[str, str], list[Case]]) -> bool:
    """A metric shown as a plain table, not ranked by method: accuracy, the maps picture, and any
    metric whose cases carry no method (a user's or a picture case such as sanity_grid)."""
    return metric in PLAIN_METRICS or all(c.get("method") is None for g in groups.values() for c in g)


def method_label(case: Case) -> str:
    return text(case.get("method"), "(none)")


def metric_order(metrics: Iterable[str]) -> list[str]:
    """Stable order: plain metrics (accuracy) first, then the rest alphabetically."""
    metrics = set(metrics)
    first = [m for m in PLAIN_METRICS if m in metrics]
    return first + sorted(metrics - set(first))


def group_cases(results: dict) -> dict[str, dict[tuple[str, str], list[Case]]]:
    """``{metric: {(dataset, model): [cases]}}`` with metrics and groups in a stable order."""
    by_metric: dict[str, dict[tuple[str, str], list[Case]]] = {}
    for case in cases_of(results):
        metric = text(case.get("metric"), "(no metric)")
        key = (text(case.get("dataset"), "(none)"), text(case.get("model"), "(none)"))
        by_metric.setdefault(metric, {}).setdefault(key, []).append(case)
    return {
        m: {k: by_metric[m][k] for k in sorted(by_metric[m])} for m in metric_order(by_metric)
    }


def direction(cases: Iterable[Case]) -> bool | None:
    """The group's ``higher_is_better`` (the most common non-null value), or ``None``."""
    votes = Counter(c.get("higher_is_better") for c in cases
                    if isinstance(c.get("higher_is_better"), bool))
    if not votes:
        return None
    return votes.most_common(1)[0][0]


def direction_text(higher: bool | None) -> str:
    return {True: "higher is better", False: "lower is better"}.get(higher, "direction unknown")


def baseline_score(case: Case, group: list[Case] | None = None) -> float | None:
    """The case's own ``baseline.score``, else the score of the group's ``random`` case."""
    base = case.get("baseline")
    if isinstance(base, dict) and as_score(base.get("score")) is not None:
        return as_score(base.get("score"))
    return group_baseline(group or [])


def group_baseline(group: list[Case]) -> float | None:
    """The score of the group's ``random`` case, else the first recorded ``baseline.score``."""
    for case in group:
        if case.get("method") == BASELINE_METHOD and as_score(case.get("score")) is not None:
            return as_score(case.get("score"))
    for case in group:
        base = case.get("baseline")
        if isinstance(base, dict) and as_score(base.get("score")) is not None:
            return as_score(base.get("score"))
    return None


def advantage(score: Any, base: float | None, higher: bool | None) -> float | None:
    """Score relative to the baseline, signed so that positive always means better."""
    score = as_score(score)
    if score is None or base is None or higher is None:
        return None
    return score - base if higher else base - score


def rank_group(group: list[Case], higher: bool | None) -> list[tuple[int | None, Case]]:
    """Cases ordered best first with their rank (1 = best; ties share the lower rank).

    Only cases with a finite score and a known direction get a rank; the others follow with rank
    ``None``, ordered by method, and so do calibration rows (``details.calibration`` set: the
    sanity checks' random and sobel controls, whose score checks the measure, not a method).
    Ties in score are broken by method then nodeid for display only.
    """
    def name_key(c: Case) -> tuple[str, str]:
        return (method_label(c), text(c.get("nodeid"), ""))

    def calibration(c: Case) -> bool:
        d = c.get("details")
        return isinstance(d, dict) and bool(d.get("calibration"))

    has_score = [higher is not None and as_score(c.get("score")) is not None
                 and not calibration(c) for c in group]
    scored = [c for c, ok in zip(group, has_score) if ok]
    unscored = sorted((c for c, ok in zip(group, has_score) if not ok), key=name_key)
    sign = -1.0 if higher else 1.0
    scored.sort(key=lambda c: (sign * as_score(c["score"]), name_key(c)))
    ranked: list[tuple[int | None, Case]] = []
    prev: float | None = None
    rank = 0
    for i, case in enumerate(scored, start=1):
        if as_score(case["score"]) != prev:
            rank, prev = i, as_score(case["score"])
        ranked.append((rank, case))
    return ranked + [(None, c) for c in unscored]


def skipped_datasets(results: dict) -> dict[str, list[str]]:
    """``{dataset: [reasons]}`` from run.skipped_datasets and from datasets all of whose cases
    were skipped (their ``details.reason``), reasons deduplicated, datasets sorted."""
    out: dict[str, list[str]] = {}
    declared = (results.get("run") or {}).get("skipped_datasets") or {}
    if isinstance(declared, dict):
        for ds, reason in declared.items():
            out.setdefault(str(ds), []).append(text(reason, "no reason given"))
    by_ds: dict[str, list[Case]] = {}
    for case in cases_of(results):
        if case.get("dataset") is not None:
            by_ds.setdefault(str(case["dataset"]), []).append(case)
    for ds, cases in by_ds.items():
        if all(c.get("outcome") == "skipped" for c in cases):
            for c in cases:
                out.setdefault(ds, []).append(text(details(c).get("reason"), "no reason given"))
    return {ds: _unique(out[ds]) for ds in sorted(out)}


def other_skips(results: dict) -> dict[str, list[str]]:
    """Skipped cases outside the fully skipped datasets: ``{reason: [nodeids]}``, sorted."""
    whole = set(skipped_datasets(results))
    out: dict[str, list[str]] = {}
    for c in cases_of(results):
        if c.get("outcome") == "skipped" and text(c.get("dataset"), "") not in whole:
            out.setdefault(text(details(c).get("reason"), "no reason given"), []).append(
                text(c.get("nodeid"), "?"))
    return {r: sorted(out[r]) for r in sorted(out)}


def _unique(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    other = [r for r in seen if r != "no reason given"]
    return other or list(seen)


def summary_matrix(results: dict) -> tuple[list[tuple[str, str, str, bool | None]],
                                           dict[str, dict[int, dict[str, Any]]]]:
    """Ranks of every method in every (metric, dataset, model) group with a scored case.

    Returns ``(columns, rows)``: columns are ``(metric, dataset, model, higher_is_better)`` in
    page order; rows map method -> {column index -> {"rank", "n", "adv", "outcome", "score"}}.
    """
    columns: list[tuple[str, str, str, bool | None]] = []
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for metric, groups in group_cases(results).items():
        if is_plain(metric, groups):
            continue
        for (dataset, model), group in groups.items():
            higher = direction(group)
            ranked = rank_group(group, higher)
            n = sum(1 for r, _ in ranked if r is not None)
            if n == 0:  # nothing scored (e.g. a skipped dataset): no column
                continue
            col = len(columns)
            columns.append((metric, dataset, model, higher))
            base = group_baseline(group)
            for rank, case in ranked:
                if case.get("outcome") == "skipped":   # folded in the metric's section
                    continue
                cell = rows.setdefault(method_label(case), {})
                if col in cell:  # duplicate method in one group: keep the better-ranked one
                    continue
                cell[col] = {"rank": rank, "n": n, "outcome": case.get("outcome"),
                             "score": as_score(case.get("score")),
                             "adv": advantage(case.get("score"), base, higher)}
    return columns, rows


def mean_rank(cells: dict[int, dict[str, Any]]) -> float | None:
    ranks = [c["rank"] for c in cells.values() if c["rank"] is not None]
    return sum(ranks) / len(ranks) if ranks else None


# --- metadata the plugin writes (results["metrics"], results["methods"]); inferred when absent ---

ROLES = ("method", "baseline", "control", "oracle")
DEFAULT_ROLES = {"random": "baseline", "sobel": "control", "oracle": "oracle"}
ROLE_TEXT = {"baseline": "baseline (black dashed)", "control": "control (grey dotted)",
             "oracle": "ground-truth mask (gold dash-dot)"}


def method_roles(results: dict) -> dict[str, str]:
    """Every method's role: ``results["methods"][id]["role"]`` when recorded (one of ``ROLES``),
    else random = baseline, sobel = control, oracle = oracle, any other = method."""
    meta = results.get("methods") if isinstance(results.get("methods"), dict) else {}
    names = {method_label(c) for c in cases_of(results) if c.get("method") is not None}
    names |= {str(m) for m in meta}
    out = {}
    for m in sorted(names):
        role = meta.get(m, {}).get("role") if isinstance(meta.get(m), dict) else None
        out[m] = role if role in ROLES else DEFAULT_ROLES.get(m, "method")
    return out


def metric_meta(results: dict, metric: str, cases: Iterable[Case] = ()) -> dict[str, Any]:
    """What a metric's score is and its direction: ``results["metrics"][metric]`` when recorded,
    else the direction inferred from its cases (``inferred`` True) and no sentence."""
    meta = results.get("metrics") if isinstance(results.get("metrics"), dict) else {}
    m = meta.get(metric) if isinstance(meta.get(metric), dict) else None
    cases = list(cases)
    if m is not None:
        higher = m.get("higher_is_better")
        return {"description": text(m.get("description"), ""), "score": text(m.get("score"), ""),
                "higher_is_better": higher if isinstance(higher, bool) else None,
                "source": text(m.get("source"), ""), "inferred": False,
                "scored": any(as_score(c.get("score")) is not None for c in cases)}
    return {"description": "", "score": "", "higher_is_better": direction(cases), "source": "",
            "inferred": True, "scored": any(as_score(c.get("score")) is not None for c in cases)}


def meaning_sentence(meta: dict[str, Any]) -> str:
    """One sentence: what the score is and whether higher is better."""
    score = meta.get("score") or meta.get("description") or ""
    score = score.rstrip(". ")
    higher = meta.get("higher_is_better")
    if higher is None:
        way = ("no direction: these cases are pictures or gates, not ranked"
               if not meta.get("scored") or meta.get("score") else "its direction is not recorded")
    else:
        way = direction_text(higher)
    if not score:
        return way[0].upper() + way[1:] + "."
    return f"{score[0].upper() + score[1:]}; {way}."


# --- skips folded per metric section ---------------------------------------------------------------

def fold_skips(results: dict, groups: dict[tuple[str, str], list[Case]]
               ) -> tuple[dict[tuple[str, str], list[Case]], list[str], dict[str, list[Case]]]:
    """A metric's groups without their skipped cases, the absent datasets among them (skipped as
    a whole: one line, reasons in the Overview), and the other skipped cases by reason."""
    absent_all = skipped_datasets(results)
    kept: dict[tuple[str, str], list[Case]] = {}
    absent: list[str] = []
    other: dict[str, list[Case]] = {}
    for (ds, mo), group in groups.items():
        rest = []
        for c in group:
            if c.get("outcome") != "skipped":
                rest.append(c)
            elif ds in absent_all:
                if ds not in absent:
                    absent.append(ds)
            else:
                other.setdefault(text(details(c).get("reason"), "no reason given"), []).append(c)
        if rest:
            kept[(ds, mo)] = rest
    return kept, sorted(absent), {r: other[r] for r in sorted(other)}


def case_place(case: Case) -> str:
    """``dataset/model/method`` (the parts a case has)."""
    parts = [case.get("dataset"), case.get("model"), case.get("method")]
    return "/".join(str(p) for p in parts if p is not None) or text(case.get("nodeid"), "?")


# --- reasons in place --------------------------------------------------------------------------------

def failure_reason(case: Case) -> str | None:
    """A failed or errored case's reason in one paragraph: the assertion's message (what was
    compared, the numbers, the margin) without pytest's ``assert`` echo; for a failed verdict with
    no message, the recorded score, baseline, advantage and margin."""
    if case.get("outcome") not in ("failed", "error"):
        return None
    d = details(case)
    err = str(d.get("error") or "").strip()
    lines = []
    for line in err.splitlines():
        s = line.strip()
        if s.startswith(("assert ", "+", "where ", "and ")) or s == "assert False":
            break
        lines.append(s)
    msg = " ".join(x for x in lines if x)
    for prefix in ("AssertionError: ", "AssertionError"):
        if msg.startswith(prefix):
            msg = msg[len(prefix):].strip()
            break
    if not msg and case.get("outcome") == "failed":
        adv, margin = as_score(d.get("advantage")), as_score(d.get("margin"))
        base = case.get("baseline") if isinstance(case.get("baseline"), dict) else {}
        parts = [f"score {fmt_num(case.get('score'))}"]
        if as_score(base.get("score")) is not None:
            parts.append(f"vs {text(base.get('method'), 'baseline')} "
                         f"{fmt_num(base.get('score'))}")
        if adv is not None and margin is not None:
            parts.append(f"advantage {fmt_num(adv)} <= required margin {fmt_num(margin)}")
        msg = "; ".join(parts) if len(parts) > 1 else ""
    return msg or None


# --- paired intervals and the agreement between metrics (issue 17; shown when present) ----------

def paired(case: Case) -> dict[str, Any] | None:
    """``details.paired`` when it holds a finite mean difference and a two-sided interval."""
    p = details(case).get("paired")
    if not isinstance(p, dict):
        return None
    ci = p.get("ci")
    mean = as_score(p.get("mean_diff"))
    if mean is None or not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = as_score(ci[0]), as_score(ci[1])
    if lo is None or hi is None:
        return None
    return {**p, "mean_diff": mean, "ci": [min(lo, hi), max(lo, hi)]}


def agreement(results: dict) -> list[tuple[str, list[str], list[list[float | None]]]]:
    """``(dataset/model, metrics, tau)`` of ``results["agreement"]``: square matrices only, cells
    that are not finite numbers become ``None``."""
    agr = results.get("agreement")
    out = []
    if not isinstance(agr, dict):
        return out
    for key in sorted(agr):
        v = agr[key]
        if not isinstance(v, dict):
            continue
        metrics, tau = v.get("metrics"), v.get("tau")
        if not isinstance(metrics, list) or not isinstance(tau, list) or len(tau) != len(metrics) \
                or not all(isinstance(r, list) and len(r) == len(metrics) for r in tau):
            continue
        out.append((str(key), [str(m) for m in metrics],
                    [[as_score(x) for x in row] for row in tau]))
    return out


def aggregate_ranks(results: dict) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """``(dataset/model, {method: {"rank", "lo", "hi", "level"}})`` of ``results["ranks"]``
    (``suite.families.aggregate_ranks``: each method's aggregate rank over the metrics with its
    bootstrap interval), sorted by key; entries without a finite rank and interval are left out."""
    ranks = results.get("ranks")
    out: list[tuple[str, dict[str, dict[str, float]]]] = []
    if not isinstance(ranks, dict):
        return out
    for key in sorted(ranks):
        v = ranks[key]
        if not isinstance(v, dict):
            continue
        row = {}
        for method, r in v.items():
            if not isinstance(r, dict):
                continue
            ci = r.get("ci")
            rank = as_score(r.get("rank"))
            if rank is None or not isinstance(ci, (list, tuple)) or len(ci) != 2:
                continue
            lo, hi = as_score(ci[0]), as_score(ci[1])
            if lo is None or hi is None:
                continue
            row[str(method)] = {"rank": rank, "lo": min(lo, hi), "hi": max(lo, hi),
                                "level": as_score(r.get("level")) or 0.95}
        if row:
            out.append((str(key), row))
    return out


def fmt_rank(value: float) -> str:
    """A rank: an integer as such, a tie's average with one decimal (``2``, ``2.5``)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
