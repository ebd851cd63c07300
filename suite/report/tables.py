"""results.csv (one row a case) and the compact terminal summary the plugin prints."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .records import (baseline_score, is_plain, cases_of, direction, fmt_duration, fmt_num,
                      fmt_signed, group_baseline, group_cases, method_label, outcome_counts,
                      rank_group, run_duration_s, skipped_datasets, text, advantage)

CSV_COLUMNS = ("nodeid", "metric", "dataset", "model", "method", "outcome", "score",
               "higher_is_better", "baseline_score", "beats_baseline", "duration_s")
MAX_WIDTH = 100


def _cell(value: Any) -> str:
    """CSV text: '' for None, 'true'/'false' for booleans, repr() for floats (exact round trip)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_rows(results: dict) -> list[dict[str, str]]:
    """The CSV rows as strings, one a case, in the order of ``results["cases"]``."""
    group_of = {id(case): group for groups in group_cases(results).values()
                for group in groups.values() for case in group}
    rows = []
    for case in cases_of(results):
        row = {k: _cell(case.get(k)) for k in CSV_COLUMNS}
        row["baseline_score"] = _cell(baseline_score(case, group_of[id(case)]))
        rows.append(row)
    return rows


def write_csv(results: dict, path: Path) -> Path:
    """Write one row a case (in results order) with the columns in ``CSV_COLUMNS``.

    ``baseline_score`` is the case's ``baseline.score``, else its group's random case's score.
    """
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(results))
    return path


def _fit(line: str) -> str:
    return line if len(line) <= MAX_WIDTH else line[: MAX_WIDTH - 1] + "…"


def summary_lines(results: dict) -> list[str]:
    """A compact summary for the end of the pytest output; every line <= 100 characters.

    Outcome counts, skipped datasets, then per metric and (dataset, model) the best method, its
    score, the random baseline's score and the winner's margin over it (positive = better).
    """
    run = results.get("run") or {}
    counts = outcome_counts(results)
    lines = [_fit("saliencybench: " + ", ".join(f"{n} {k}" for k, n in counts.items())
                  + f"  [scale {text(run.get('scale'))}, {text(run.get('device'))}, "
                  f"{fmt_duration(run_duration_s(run))}]")]
    for ds, reasons in skipped_datasets(results).items():
        lines.append(_fit(f"  skipped dataset {ds}: {'; '.join(reasons)}"))
    rows = []
    for metric, groups in group_cases(results).items():
        for (dataset, model), group in groups.items():
            if is_plain(metric, groups):
                for case in group:
                    if case.get("outcome") == "skipped" or case.get("score") is None:
                        continue   # skipped datasets are listed once above; pictures have no score
                    rows.append((metric, f"{dataset}/{model}", "", fmt_num(case.get("score")),
                                 "", "", text(case.get("outcome"))))
                continue
            higher = direction(group)
            ranked = [(r, c) for r, c in rank_group(group, higher) if r is not None]
            base = group_baseline(group)
            arrow = {True: "↑", False: "↓"}.get(higher, "?")
            if not ranked:   # e.g. picture-only cases, or all skipped: nothing to rank
                continue
            best = [c for r, c in ranked if r == 1]
            top = best[0]
            name = method_label(top) + (f" (+{len(best) - 1} tied)" if len(best) > 1 else "")
            rows.append((f"{metric} {arrow}", f"{dataset}/{model}", name,
                         fmt_num(top.get("score")), fmt_num(base),
                         fmt_signed(advantage(top.get("score"), base, higher)),
                         f"{len(ranked)} ranked"))
    if rows:
        head = ("metric", "dataset/model", "best method", "score", "random", "vs random", "")
        widths = [min(max(len(r[i]) for r in rows + [head]), w)
                  for i, w in enumerate((16, 26, 22, 9, 9, 9, 12))]
        for r in [head] + rows:
            lines.append(_fit("  " + "  ".join(
                (v if len(v) <= w else v[: w - 1] + "…").ljust(w)
                for v, w in zip(r, widths)).rstrip()))
        lines.append("  ↑/↓: higher/lower is better; vs random: the winner's margin over the "
                     "random baseline (+ = better)")
    failed = [(c.get("outcome"), text(c.get("nodeid"))) for c in results.get("cases") or []
              if c.get("outcome") in ("failed", "error")]
    for outcome, nodeid in failed[:10]:
        lines.append(_fit(f"  {'ERROR ' if outcome == 'error' else 'FAILED'} {nodeid}"))
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more failed cases (see results.csv)")
    return lines
