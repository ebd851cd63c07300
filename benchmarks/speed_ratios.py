"""The side-by-side ratios of the speed benchmarks, from pytest-benchmark's stats (pure functions).

Each benchmark of a group is one side of a comparison; its ``extra_info`` says which:

* ``role``: ``"suite"`` (the suite's code; one per group), ``"floor"`` (the least work the
  suite's job needs, e.g. the forward passes alone, or what a user of captum writes by hand) or
  ``"peer"`` (another implementation of the same result: Quantus, scipy, a numpy reference);
* ``side``: a short name ("kernel", "forward", "quantus", ...);
* ``items``: how many items (images, pairs) one call handles; ratios are per item, so the two
  sides may run on different amounts (a slow reference on a subset);
* ``cpu_min`` / ``cpu_median``: the process CPU time (all threads) of the timed calls, in seconds.

Ratios (per item, from the best round, ``stats["min"]``; the median round is given too):
``suite/<floor>`` = suite time / floor time (the suite's overhead: lower is better) and
``<peer>/suite`` = peer time / suite time (the suite's speed-up: higher is better). Both are
written so that a ratio's "change" is how much slower the suite got relative to the other side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ROLES = ("suite", "floor", "peer")
OVERHEAD, SPEEDUP = "suite/floor", "peer/suite"


def _per_item(bench: dict, stat: str) -> float | None:
    info = bench.get("extra_info") or {}
    items = info.get("items", 1)
    if stat == "cpu":
        t = info.get("cpu_min")
    else:
        t = (bench.get("stats") or {}).get(stat)
    if t is None or not items:
        return None
    return float(t) / float(items)


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or not math.isfinite(num) or not math.isfinite(den):
        return None
    return num / den


def group_ratios(benchmarks: list[dict]) -> dict[str, dict[str, dict]]:
    """{group: {ratio name: {"kind", "wall", "wall_median", "cpu"}}} from pytest-benchmark's JSON
    entries (``output_json["benchmarks"]``: each with "group", "name", "stats" holding "min" and
    "median", "extra_info" holding role, side, items, cpu_min).

    Entries without a role (not ours) are ignored; a group without its suite side (deselected,
    skipped) gives no ratios. Two suite sides in one group, or an unknown role, are errors.
    """
    groups: dict[str, list[dict]] = {}
    for b in benchmarks:
        role = (b.get("extra_info") or {}).get("role")
        if role is None:
            continue
        if role not in ROLES:
            raise ValueError(f"benchmark {b.get('name')!r}: role {role!r}; allowed: {ROLES}")
        groups.setdefault(b.get("group") or "", []).append(b)
    out: dict[str, dict[str, dict]] = {}
    for group, members in sorted(groups.items()):
        suites = [b for b in members if b["extra_info"]["role"] == "suite"]
        if len(suites) > 1:
            raise ValueError(f"group {group!r} has {len(suites)} suite sides "
                             f"({', '.join(b.get('name', '?') for b in suites)}); one allowed")
        if not suites:
            continue
        s = suites[0]
        s_name = s["extra_info"].get("side", "suite")
        rows: dict[str, dict] = {}
        for b in members:
            role = b["extra_info"]["role"]
            if role == "suite":
                continue
            side = b["extra_info"].get("side", b.get("name", "?"))
            if role == "floor":
                name, kind, num, den = f"{s_name}/{side}", OVERHEAD, s, b
            else:
                name, kind, num, den = f"{side}/{s_name}", SPEEDUP, b, s
            rows[name] = {"kind": kind,
                          "wall": _ratio(_per_item(num, "min"), _per_item(den, "min")),
                          "wall_median": _ratio(_per_item(num, "median"), _per_item(den, "median")),
                          "cpu": _ratio(_per_item(num, "cpu"), _per_item(den, "cpu"))}
        if rows:
            out[group] = rows
    return out


@dataclass(frozen=True)
class Change:
    """One ratio against the baseline's. ``change``: how much slower the suite got relative to
    the other side (0.2 = 20 % slower; negative: faster); ``regressed``: change > tolerance."""

    group: str
    name: str
    baseline: float
    current: float
    change: float
    regressed: bool


def compare(current: dict, baseline: dict, tolerance: float,
            stat: str = "wall") -> tuple[list[Change], list[str]]:
    """(changes of the ratios present in both runs, "group: ratio" names in the baseline but
    not in this run). ``stat``: which ratio ("wall", "wall_median" or "cpu")."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    changes, missing = [], []
    for group, rows in sorted(baseline.items()):
        for name, base in sorted(rows.items()):
            cur = current.get(group, {}).get(name)
            b = base.get(stat)
            if cur is None or cur.get(stat) is None or b is None:
                missing.append(f"{group}: {name}")
                continue
            c = cur[stat]
            change = c / b - 1.0 if base["kind"] == OVERHEAD else b / c - 1.0
            changes.append(Change(group, name, b, c, change, change > tolerance))
    return changes, missing


def ratios_of_saved_run(data: dict) -> dict:
    """The ratios of a saved pytest-benchmark JSON: its "ratios" entry (written by
    benchmarks/conftest.py), else recomputed from its "benchmarks" entries."""
    if not isinstance(data, dict):
        raise ValueError("not a pytest-benchmark JSON object")
    if isinstance(data.get("ratios"), dict):
        return data["ratios"]
    return group_ratios(data.get("benchmarks") or [])


def table(ratios: dict) -> list[str]:
    """Text lines of the ratio table (group, ratio, wall best, wall median, process CPU)."""
    def f(v):
        return "     -" if v is None else f"{v:7.2f}x"

    lines = [f"{'group':34s} {'ratio':28s} {'wall':>8s} {'median':>8s} {'cpu':>8s}"]
    for group, rows in sorted(ratios.items()):
        for name, r in rows.items():
            lines.append(f"{group:34s} {name:28s} {f(r['wall']):>8s} {f(r['wall_median']):>8s} "
                         f"{f(r['cpu']):>8s}")
    return lines
