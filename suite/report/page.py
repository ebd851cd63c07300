"""The HTML report: one self-contained file (inline CSS, images as data URIs, no JavaScript).

Named ``page`` rather than ``html`` so it never shadows the standard library's ``html`` module.
"""
from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .compare import compare_runs
from .plots import (RASTER_QUALITY, ImageCache, Style, compact_image, group_multiples,
                    looks_raster, method_styles, multiples_image)
from .records import (BASELINE_METHOD, OUTCOME_LABELS, ROLE_TEXT, Case, advantage, agreement,
                      aggregate_ranks, fmt_rank,
                      as_score, baseline_score, case_place, cases_of, details, direction,
                      direction_text, expectation, failure_reason, fmt_duration, fmt_num,
                      fmt_signed, fold_skips, group_baseline, is_plain, group_cases,
                      meaning_sentence, mean_rank, method_label, method_roles, metric_meta,
                      other_skips, outcome_counts, paired, rank_group, run_duration_s,
                      skipped_datasets, summary_matrix, text)
from .style import STYLE
from .tables import write_csv

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}
# Per-case pictures that the report draws itself from the cases' curves (the sanity checks'
# similarity plots: the sections' small multiples show the same curves): not embedded, the files
# stay in assets/.
SUPERSEDED_PICTURES = ("similarity per ",)
WIDE_PICTURE = 1400  # px: wider pictures sit in a horizontal scroll box at their own size
# No network, no scripts: the page can only use itself.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: Any) -> str:
    return html.escape(text(value), quote=True)


def render(results: dict, out_dir: Path, compare: dict | None = None,
           image_cache: Path | None = None) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/results.csv``; return the index path.

    ``results`` is a results.json dict (schema 1). ``compare``, when given, is an earlier run's
    results dict; the page then gets a section listing what changed (see ``compare_runs``).
    Image files named by cases are read relative to ``out_dir``. Output depends only on the input.
    ``image_cache``: a folder of drawn images to reuse (``plots.ImageCache``: keyed by a hash of
    what each image is drawn from and of the drawing code), or ``None`` to draw everything.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    _write_atomic(index, _Page(results, out_dir, compare, ImageCache(image_cache)).build())
    write_csv(results, out_dir / "results.csv")
    return index


def _write_atomic(path: Path, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def stack_images(images: list) -> Any:
    """PIL images on one white canvas, in reading order: as many columns as fit 1300 px (at most
    3), each picture at its own size, centred in its cell."""
    from PIL import Image

    w = max(im.width for im in images)
    h = max(im.height for im in images)
    cols = max(1, min(3, 1300 // max(w, 1), len(images)))
    rows = -(-len(images) // cols)
    canvas = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas.paste(im.convert("RGB"), (c * w + (w - im.width) // 2, r * h))
    return canvas


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _Page:
    def __init__(self, results: dict, out_dir: Path, compare: dict | None,
                 cache: ImageCache | None = None):
        self.results = results
        self.cache = cache or ImageCache(None)
        self.run = results.get("run") if isinstance(results.get("run"), dict) else {}
        self.out_dir = out_dir
        self.compare = compare
        self.groups = group_cases(results)
        self.roles = method_roles(results)
        self.styles = method_styles((method_label(c) for c in cases_of(results)
                                     if c.get("method") is not None), self.roles)
        self.colors = {m: st.color for m, st in self.styles.items()}
        self.drawn: set[tuple[str, str, str]] = set()   # groups whose curves the page drew
        self.ids: set[str] = set()
        self.ids.update({"overview", "summary", "comparison", "pictures", "studies",
                         "agreement", "legend", "matrix-box"})
        self.gids: dict[tuple[str, str, str], str] = {}
        for metric, groups in self.groups.items():
            for ds, mo in groups:
                self.gids[(metric, ds, mo)] = self.anchor("g", metric, ds, mo)

    def anchor(self, *parts: Any) -> str:
        """A unique, readable element id."""
        base = re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, parts)).lower()).strip("-") or "s"
        name, i = base, 2
        while name in self.ids:
            name, i = f"{base}-{i}", i + 1
        self.ids.add(name)
        return name

    # --- page -------------------------------------------------------------------------------
    def build(self) -> str:
        sections: list[tuple[str, str, str]] = [
            ("overview", "Overview", self.overview()),
            ("summary", "Summary matrix", self.matrix()),
        ]
        self.ids.update({"overview", "summary", "comparison", "pictures", "studies",
                         "agreement"})
        agree = self.agreement()
        if agree:
            sections.append(("agreement", "Agreement", agree))
        if self.compare is not None:
            sections.append(("comparison", "Comparison", self.comparison()))
        for metric, groups in self.groups.items():
            sid = self.anchor("metric", metric)
            sections.append((sid, metric, self.metric_section(sid, metric, groups)))
        pictures = self.pictures()
        if pictures:
            sections.append(("pictures", "Pictures", pictures))
        from .studies import section as studies_section   # Samek Fig. 4, model table, ...
        studies = studies_section(self.results, self.colors)
        if studies:
            sections.append(("studies", "Studies", studies))
        nav = " ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
        run = self.run
        sub = " · ".join(esc(v) for v in (
            f"scale {text(run.get('scale'))}", text(run.get("device")),
            f"started {text(run.get('started'))}", f"git {text(run.get('git'))[:12]}"))
        body = "\n".join(body for _, _, body in sections)
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>saliencybench report — {esc(run.get('scale'))} — {esc(run.get('started'))}</title>
<style>{STYLE}</style>
</head>
<body>
<header><h1>saliencybench report</h1><p class="sub">{sub}</p>
<nav>{nav}</nav>{self.legend()}</header>
<main>
{body}
</main>
<footer>Generated from results.json (schema {esc(self.results.get('schema'))}) by
suite.report. Per-case data: results.csv.</footer>
</body>
</html>
"""

    # --- overview ---------------------------------------------------------------------------
    def verdicts(self) -> list[tuple[str, str]]:
        counts = outcome_counts(self.results)
        n = sum(counts.values())
        out: list[tuple[str, str]] = []
        if n == 0:
            out.append(("warn", "No cases were recorded."))
        if counts.get("error"):
            out.append(("bad", f"{counts['error']} case(s) raised an error or crashed: these are "
                               "faults of the run (a method's or the suite's code, a worker), not "
                               "verdicts about a method; their error text is in the list below."))
        if counts["failed"]:
            out.append(("bad", f"{counts['failed']} case(s) failed: their method did not pass the "
                               "benchmark's check (the reason is shown beside each)."))
        odd = {k: v for k, v in counts.items() if k not in OUTCOME_LABELS and v}
        if odd:
            out.append(("bad", "Cases with other outcomes: "
                        + ", ".join(f"{v} {k}" for k, v in odd.items()) + "."))
        if counts["xpassed"]:
            out.append(("warn", f"{counts['xpassed']} case(s) passed although expected to fail "
                                "(xpassed): the expectation may be out of date."))
        skipped = skipped_datasets(self.results)
        if skipped:
            out.append(("warn", f"{len(skipped)} dataset(s) not evaluated: "
                        + ", ".join(skipped) + "."))
        first = [f"{m} {ds}/{mo}" for m, groups in self.groups.items() if not is_plain(m, groups)
                 for (ds, mo), g in groups.items()
                 if any(r == 1 and c.get("method") == BASELINE_METHOD
                        for r, c in rank_group(g, direction(g)))]
        if first:
            out.append(("warn", "The random baseline ranks first in: " + "; ".join(first)
                        + ". Those groups cannot separate methods from chance."))
        if n and not counts["xpassed"] and not any(k == "bad" for k, _ in out):
            ran = counts["passed"] + counts["xfailed"]
            out.insert(0, ("good", f"All {ran} case(s) that ran behaved as expected "
                                   "(passed, or failed as expected)."))
        return out

    def overview(self) -> str:
        run = self.run
        counts = outcome_counts(self.results)
        verdicts = "".join(f'<li class="{k}">{esc(t)}</li>' for k, t in self.verdicts())
        boxes = "".join(
            f'<div class="count o-{esc(k)}"><span class="n">{v}</span>'
            f'<span class="k">{esc(OUTCOME_LABELS.get(k, k))}</span></div>'
            for k, v in counts.items())
        meta = [("Started", run.get("started")), ("Finished", run.get("finished")),
                ("Duration", fmt_duration(run_duration_s(run))), ("Scale", run.get("scale")),
                ("Device", run.get("device")),
                ("Seeds", ", ".join(map(str, run.get("seeds") or [])) or None),
                ("Git commit", run.get("git"))]
        versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
        meta += [(f"{name}", v) for name, v in sorted(versions.items())]
        meta_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta)
        parts = [f'<section id="overview"><h2>Overview</h2>',
                 f'<ul class="verdicts">{verdicts}</ul>',
                 f'<div class="counts">{boxes}</div>',
                 '<div class="cols"><div><h3>Run</h3>'
                 f'<table class="meta" id="run-meta"><tbody>{meta_rows}</tbody></table></div>']
        skipped = skipped_datasets(self.results)
        side = []
        if skipped:
            rows = "".join(f'<tr data-dataset="{esc(ds)}"><td>{esc(ds)}</td>'
                           f'<td>{"<br>".join(esc(r) for r in reasons)}</td></tr>'
                           for ds, reasons in skipped.items())
            side.append('<h3>Skipped datasets</h3><table class="plain" id="skipped-datasets">'
                        f'<thead><tr><th>Dataset</th><th>Reason</th></tr></thead>'
                        f'<tbody>{rows}</tbody></table>')
        others = other_skips(self.results)
        if others:
            items = "".join(f"<li>{esc(r)} ({len(ids)} case{'s' * (len(ids) != 1)}): "
                            + ", ".join(f"<code>{esc(i)}</code>" for i in ids) + "</li>"
                            for r, ids in others.items())
            side.append(f'<h3>Other skipped cases</h3><ul class="small">{items}</ul>')
        notable = [c for c in cases_of(self.results)
                   if c.get("outcome") not in ("passed", "skipped", "xfailed")]
        if notable:
            rows = "".join(
                f'<tr class="row-{esc(c.get("outcome"))}"><td>{self.outcome_cell(c)}</td>'
                f'<td><a href="#{self.group_id(c)}">{esc(c.get("metric"))} · '
                f'{esc(case_place(c))}</a><div class="small"><code>{esc(c.get("nodeid"))}'
                f'</code></div></td><td>{self.reason_html(c)}</td></tr>' for c in notable)
            side.append('<h3>Failed and unexpected cases</h3><table class="plain" id="failures">'
                        '<thead><tr><th>Outcome</th><th>Case</th><th>Reason</th></tr></thead>'
                        f'<tbody>{rows}</tbody></table>')
        parts.append(f'<div>{"".join(side)}</div></div></section>')
        return "\n".join(parts)

    # --- summary matrix ---------------------------------------------------------------------
    def matrix(self) -> str:
        columns, rows = summary_matrix(self.results)
        head = '<section id="summary"><h2>Summary matrix</h2>'
        if not columns:
            return head + '<p class="note">No ranked metrics in this run.</p></section>'
        metrics: list[tuple[str, int]] = []
        for metric, *_ in columns:
            if metrics and metrics[-1][0] == metric:
                metrics[-1] = (metric, metrics[-1][1] + 1)
            else:
                metrics.append((metric, 1))
        h1 = "".join(f'<th colspan="{span}" class="mhead">{esc(m)}</th>' for m, span in metrics)
        h2 = "".join(
            f'<th title="{esc(direction_text(hib))}">{esc(ds)}<br>{esc(mo)} '
            f'{ {True: "↑", False: "↓"}.get(hib, "?") }</th>' for _, ds, mo, hib in columns)
        order = sorted(rows, key=lambda m: (mean_rank(rows[m]) is None,
                                            mean_rank(rows[m]) or 0.0, m))
        agg = aggregate_ranks(self.results)
        level = next((r["level"] for _, row in agg for r in row.values()), 0.95)
        agg_head = "".join(f'<th rowspan="2" class="agg" data-key="{esc(k)}">Aggregate rank'
                           f'<br>{esc(k)}</th>' for k, _ in agg)
        body = []
        for method in order:
            cells = rows[method]
            mr = mean_rank(cells)
            wins = sum(1 for c in cells.values() if c["rank"] == 1)
            tds = []
            for col in range(len(columns)):
                cell = cells.get(col)
                if cell is None:
                    tds.append('<td class="c-none">·</td>')
                    continue
                cls = ["c"]
                if method == BASELINE_METHOD:
                    cls.append("c-base")
                elif cell["rank"] == 1:
                    cls.append("c-best")
                elif cell["adv"] is not None:
                    cls.append("c-better" if cell["adv"] > 0 else "c-worse")
                if cell["outcome"] == "failed":
                    cls.append("c-failed")
                rank = "—" if cell["rank"] is None else f'{cell["rank"]}/{cell["n"]}'
                mark = " ✗" if cell["outcome"] == "failed" else ""
                adv = "" if method == BASELINE_METHOD else fmt_signed(cell["adv"])
                tip = (f"score {fmt_num(cell['score'])}, vs random {fmt_signed(cell['adv'])}, "
                       f"outcome {text(cell['outcome'])}")
                tds.append(f'<td class="{" ".join(cls)}" title="{esc(tip)}">'
                           f'<b>{rank}</b>{mark}<span class="adv">{esc(adv)}</span></td>')
            base_cls = ' class="is-base"' if method == BASELINE_METHOD else ""
            aggs = []
            for key, row in agg:
                r = row.get(method)
                if r is None:
                    aggs.append(f'<td class="num agg c-none" data-key="{esc(key)}">·</td>')
                    continue
                aggs.append(f'<td class="num agg" data-key="{esc(key)}" title="aggregate rank '
                            f'{fmt_rank(r["rank"])}, {r["level"]:.0%} bootstrap interval '
                            f'[{fmt_rank(r["lo"])}, {fmt_rank(r["hi"])}] on {esc(key)}">'
                            f'{fmt_rank(r["rank"])} [{fmt_rank(r["lo"])}, '
                            f'{fmt_rank(r["hi"])}]</td>')
            body.append(f'<tr data-method="{esc(method)}"{base_cls}><th>{esc(method)}</th>'
                        f'<td class="num">{"—" if mr is None else f"{mr:.2f}"}</td>'
                        f'<td class="num">{wins}</td>{"".join(aggs)}{"".join(tds)}</tr>')
        agg_lead = (f' Aggregate rank (one column per dataset / model, when the run recorded '
                    f'per-image scores): the method\'s rank by its mean rank over the metrics '
                    f'there (1 = best), and in brackets its {level:.0%} bootstrap interval: the '
                    f'percentile interval of that rank when every metric\'s images are redrawn '
                    f'with replacement (results.json "ranks").' if agg else "")
        return (head + '<p class="lead">Each cell: the method\'s rank within its metric, dataset '
                'and model (1 = best, given the metric\'s direction ↑/↓), and below it the score '
                'relative to the random baseline (+ = better than random). Green: beats random; '
                'red: worse than random; dark green: best in the column; ✗: the case failed. '
                f'Rows are sorted by mean rank.{esc(agg_lead)}</p>'
                '<div class="matrix-box" id="matrix-box"><table class="matrix" '
                'id="summary-matrix"><thead>'
                f'<tr><th rowspan="2">Method</th><th rowspan="2">Mean rank</th>'
                f'<th rowspan="2">Wins</th>{agg_head}{h1}</tr><tr>{h2}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table></div></section>')

    # --- styles, legend, agreement ----------------------------------------------------------
    def group_id(self, case: Case) -> str:
        key = (text(case.get("metric"), "(no metric)"), text(case.get("dataset"), "(none)"),
               text(case.get("model"), "(none)"))
        if key not in self.gids:
            self.gids[key] = self.anchor("g", *key)
        return self.gids[key]

    def style(self, method: str) -> Style:
        return self.styles.get(method) or Style("#666666", "-", "solid", "method")

    def swatch(self, method: str) -> str:
        st = self.style(method)
        return (f'<i class="sw sw-{esc(st.role)}" data-color="{esc(st.color)}" '
                f'style="border-top:3px {st.css} {st.color}"></i>')

    def legend(self) -> str:
        """One line: every attribution method's colour, then the controls' styles."""
        methods = [m for m, st in self.styles.items() if st.is_method]
        controls = [m for m, st in self.styles.items() if not st.is_method]
        if not self.styles:
            return ""
        items = "".join(f'<span class="lg" data-method="{esc(m)}">{self.swatch(m)}{esc(m)}</span>'
                        for m in methods)
        ctl = "".join(f'<span class="lg" data-method="{esc(m)}">{self.swatch(m)}{esc(m)}: '
                      f'{esc(ROLE_TEXT.get(self.style(m).role, self.style(m).role))}</span>'
                      for m in controls)
        return (f'<p class="legend" id="legend"><b>Methods</b> (one colour each, in every figure '
                f'and table): {items}{" · " if ctl else ""}{ctl}</p>')

    def agreement(self) -> str:
        """Kendall's tau between the metrics' method rankings, one matrix per (dataset, model)."""
        mats = agreement(self.results)
        if not mats:
            return ""
        parts = ['<section id="agreement"><h2>Agreement between metrics</h2>'
                 '<p class="lead">Kendall\'s tau between the method rankings of every pair of '
                 'metrics (1: the same order, 0: unrelated, −1: reversed; — where undefined, e.g. '
                 'fewer than two common methods).</p><div class="pics">']
        for key, metrics, tau in mats:
            head = "".join(f"<th>{esc(m)}</th>" for m in metrics)
            rows = []
            for m, row in zip(metrics, tau):
                cells = []
                for v in row:
                    if v is None:
                        cells.append('<td class="tau tau-none">—</td>')
                        continue
                    a = min(1.0, abs(v))
                    color = (f"rgba(26,127,55,{0.15 + 0.6 * a:.2f})" if v >= 0
                             else f"rgba(207,34,46,{0.15 + 0.6 * a:.2f})")
                    cells.append(f'<td class="tau" style="background:{color}">{v:+.2f}</td>')
                rows.append(f"<tr><th>{esc(m)}</th>{''.join(cells)}</tr>")
            parts.append(f'<figure class="agree"><table class="agreement" '
                         f'data-key="{esc(key)}"><thead><tr><th></th>{head}</tr></thead>'
                         f'<tbody>{"".join(rows)}</tbody></table><figcaption>{esc(key)}'
                         '</figcaption></figure>')
        parts.append("</div></section>")
        return "".join(parts)

    # --- per-metric sections ----------------------------------------------------------------
    def outcome_cell(self, case: Case) -> str:
        outcome = text(case.get("outcome"), "unknown")
        label = OUTCOME_LABELS.get(outcome, outcome)
        if outcome == "failed":
            label = "✗ FAILED"
        elif outcome == "error":
            label = "⚠ ERROR"
        return f'<span class="o o-{esc(outcome)}">{esc(label)}</span>'

    def reason_html(self, case: Case) -> str:
        """Why a case failed (visible), with the full message folded; an expectation and its
        source for an xfail/xpass; an error's text."""
        out = []
        why = failure_reason(case)
        if why:
            out.append(f'<div class="why">{esc(why)}</div>')
        error = details(case).get("error") if case.get("outcome") in ("failed", "error") else None
        if error and str(error).strip() != (why or ""):
            out.append(f'<details class="small err"><summary>full message</summary>'
                       f'<pre>{esc(error)}</pre></details>')
        exp = expectation(case)
        reason = details(case).get("reason")
        if reason and not (exp and str(reason).startswith("expected")):
            out.append(f'<div class="small">{esc(reason)}</div>')
        if exp:
            out.append(f'<div>expected to {esc(exp.get("expected"))}</div>'
                       + (f'<div class="small">{esc(exp.get("source"))}</div>'
                          if exp.get("source") else ""))
        return "".join(out) or "—"

    def plain_reason(self, case: Case) -> str:
        """The reason of a plain table's row: only where something went wrong or unexpected."""
        return (self.reason_html(case) if case.get("outcome") in ("failed", "error", "xpassed")
                else "")

    def duration_cell(self, case: Case) -> str:
        cached = ' <span class="tag">cached</span>' if details(case).get("from_cache") else ""
        return f"{esc(fmt_duration(case.get('duration_s')))}{cached}"

    def skip_lines(self, absent: list[str], other: dict[str, list[Case]]) -> str:
        lines = []
        if absent:
            lines.append(f'<li class="absent">{esc(", ".join(absent))}: dataset not available '
                         'in this run (not on disk or not evaluated); reasons in '
                         '<a href="#overview">Overview</a></li>')
        for reason, cases in other.items():
            names = ", ".join(case_place(c) for c in cases)
            lines.append(f'<li>{len(cases)} case{"s" * (len(cases) != 1)} skipped: '
                         f'{esc(reason)} <span class="small">({esc(names)})</span></li>')
        return f'<ul class="skips">{"".join(lines)}</ul>' if lines else ""

    def metric_section(self, sid: str, metric: str, groups: dict) -> str:
        all_cases = [c for g in groups.values() for c in g]
        meta = metric_meta(self.results, metric, all_cases)
        kept, absent, other = fold_skips(self.results, groups)
        src = (f' <span class="small">({esc(meta["source"])})</span>' if meta.get("source")
               else "")
        parts = [f'<section id="{sid}" class="metric"><h2>{esc(metric)}</h2>',
                 f'<p class="meaning">{esc(meaning_sentence(meta))}{src}</p>',
                 self.skip_lines(absent, other)]
        if is_plain(metric, groups):
            first = {id(g[0]) for g in kept.values()}     # a group's anchor: its first row
            rows = "".join(
                f'<tr class="row-{esc(c.get("outcome"))}" title="{esc(c.get("nodeid"))}"'
                + (f' id="{self.group_id(c)}">' if id(c) in first else ">") +
                f'<td>{esc(ds)}</td><td>{esc(mo)}</td>'
                f'<td class="num">{esc(fmt_num(c.get("score")))}</td>'
                f'<td>{self.outcome_cell(c)}{self.plain_reason(c)}</td>'
                f'<td class="num">{self.duration_cell(c)}</td></tr>'
                for (ds, mo), group in kept.items() for c in group)
            if rows:
                parts.append(f'<table class="plain accuracy" id="{self.anchor("table", metric)}">'
                             '<thead><tr><th>Dataset</th><th>Model</th><th>Score</th>'
                             '<th>Outcome</th><th>Duration</th></tr></thead>'
                             f'<tbody>{rows}</tbody></table>')
        else:
            for (ds, mo), group in kept.items():
                parts.append(self.group_block(metric, ds, mo, group, meta))
        parts.append("</section>")
        return "\n".join(p for p in parts if p)

    def paired_cell(self, case: Case, scale: float, higher: bool | None) -> str:
        p = paired(case)
        if p is None:
            return "—"
        lo, hi = p["ci"]
        mean = p["mean_diff"]
        level = as_score(p.get("level"))
        pos = lambda v: 50 + 50 * v / scale  # noqa: E731  (percent across the cell; 0 mid)
        bar = (f'<span class="ci" title="{esc(fmt_signed(mean))} [{esc(fmt_signed(lo))}, '
               f'{esc(fmt_signed(hi))}]"><span class="ci-zero"></span>'
               f'<span class="ci-bar" style="left:{pos(lo):.1f}%;width:{max(pos(hi) - pos(lo), 1):.1f}%">'
               f'</span><span class="ci-dot" style="left:{pos(mean):.1f}%"></span></span>')
        better = None if higher is None else (lo > 0 if higher else hi < 0)
        worse = None if higher is None else (hi < 0 if higher else lo > 0)
        mark = ('<span class="yes">better</span>' if better else
                '<span class="no">worse</span>' if worse else '<span class="base">overlaps 0</span>')
        pv = as_score(p.get("p_holm"))
        pv = as_score(p.get("p_value")) if pv is None else pv
        unit = text(p.get("unit"), "")
        how = ", ".join(x for x in (f"n={p['n']}" if p.get("n") is not None else "",
                                    unit, text(p.get("method"), "")) if x)
        return (f'<div class="num">{esc(fmt_signed(mean))} [{esc(fmt_signed(lo))}, '
                f'{esc(fmt_signed(hi))}]</div>{bar}<div class="small">{mark}'
                f'{f" · p(Holm) {fmt_num(pv, 2)}" if pv is not None else ""}'
                f'{f" · {esc(how)}" if how else ""}'
                f'{f" · {level:.0%}" if level is not None else ""}</div>')

    def group_block(self, metric: str, dataset: str, model: str, group: list[Case],
                    meta: dict | None = None) -> str:
        higher = direction(group)
        if higher is None and meta is not None:
            higher = meta.get("higher_is_better")
        base = group_baseline(group)
        gid = self.gids.get((metric, dataset, model)) or self.group_id(group[0])
        title = f"{metric} — {dataset} / {model}"
        ranked = rank_group(group, higher)
        mult = group_multiples([c for _, c in ranked])
        if mult is None:
            plot = '<p class="note">No curves recorded for this group.</p>'
        else:
            self.drawn.add((metric, dataset, model))
            used = sorted({p.method for p in mult.panels} | {d[0] for d in mult.diff})
            mime, data = self.cache.get(
                ("multiples", mult, [(u, self.styles.get(u)) for u in used]),
                lambda: multiples_image(mult, self.styles))
            plot = (f'<figure class="plot"><img src="{_data_uri(mime, data)}" '
                    f'alt="{esc(title)} curves"><figcaption class="small">One panel per method '
                    'in rank order, each against the random baseline (black dashed); the first '
                    f'panel: {esc(mult.diff_title)} of every method.</figcaption></figure>')
        pairs = [paired(c) for _, c in ranked]
        has_paired = any(p is not None for p in pairs)
        scale = max([max(abs(p["ci"][0]), abs(p["ci"][1]), abs(p["mean_diff"]))
                     for p in pairs if p is not None] or [1.0]) or 1.0
        rows = []
        for rank, case in ranked:
            method = method_label(case)
            is_base = case.get("method") == BASELINE_METHOD
            row_base = baseline_score(case, group)
            adv = None if is_base else advantage(case.get("score"), row_base, higher)
            beats = case.get("beats_baseline")
            beats_html = ('<span class="base">baseline</span>' if is_base else
                          {True: '<span class="yes">✓ yes</span>',
                           False: '<span class="no">✗ no</span>'}.get(beats, "—"))
            std = as_score(details(case).get("score_std"))
            score = fmt_num(case.get("score")) + (f" ± {fmt_num(std, 2)}" if std else "")
            ci = (f'<td class="pair">{self.paired_cell(case, scale * 1.05, higher)}</td>'
                  if has_paired else "")
            rows.append(
                f'<tr class="row-{esc(case.get("outcome"))}{" is-base" if is_base else ""}" '
                f'data-method="{esc(method)}" data-rank="{"" if rank is None else rank}">'
                f'<td class="num">{"—" if rank is None else rank}</td>'
                f'<td class="name" title="{esc(case.get("nodeid"))}">{self.swatch(method)}'
                f'{esc(method)}</td>'
                f'<td class="num">{esc(score)}</td>'
                f'<td class="num">{esc(fmt_num(row_base))}</td>'
                f'<td class="num">{esc(fmt_signed(adv))}</td>{ci}<td>{beats_html}</td>'
                f'<td>{self.outcome_cell(case)}</td><td class="reason">{self.reason_html(case)}'
                f'</td><td class="num">{self.duration_cell(case)}</td></tr>')
        arrow = {True: "↑", False: "↓"}.get(higher, "?")
        ci_head = "<th>Paired Δ vs random (CI)</th>" if has_paired else ""
        info = (f'random baseline score {esc(fmt_num(base))} · {len(group)} case(s)')
        return (f'<div class="group" id="{gid}"><h3>{esc(dataset)} / {esc(model)}</h3>'
                f'<p class="meta">{info}</p>{plot}'
                f'<table class="ranking" data-group="{esc(metric)}/{esc(dataset)}/{esc(model)}">'
                f'<caption>Methods ranked by score ({esc(direction_text(higher))})</caption>'
                f'<thead><tr><th>Rank</th><th>Method</th><th>Score {arrow}</th>'
                f'<th>Baseline</th><th>vs random</th>{ci_head}<th>Beats baseline</th>'
                '<th>Outcome</th><th>Reason / expectation</th><th>Duration</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')

    # --- pictures ---------------------------------------------------------------------------
    def load_picture(self, image: Any) -> tuple[str | None, str, Any]:
        """``(problem, file, (mime, bytes) or PIL image)`` of a case's picture record; a PIL
        image carries its file's sha256 in ``info["sha256"]`` (the image cache's key)."""
        if not isinstance(image, dict):
            return "unreadable record", "", None
        file = text(image.get("file"), "")
        root = self.out_dir.resolve()
        path = (self.out_dir / file).resolve()
        if not file or not path.is_relative_to(root):
            return "outside the report folder", file, None
        if not path.is_file():
            return "missing", file, None
        try:
            data = path.read_bytes()
        except OSError as e:
            return f"unreadable ({e.strerror})", file, None
        mime = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
        if mime in ("image/svg+xml", "image/gif"):
            return None, file, (mime, data)
        try:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.load()
                img = im.copy()
            img.info["sha256"] = hashlib.sha256(data).hexdigest()
            return None, file, img
        except Exception:   # not a picture PIL reads: embed the bytes as they are
            return None, file, (mime, data)

    def picture_figure(self, img: Any, title: str, sub: str, extra_cls: str = "",
                       lossy: int | None = None, key: Any = None) -> str:
        """``lossy``: the WebP quality to try for a raster picture (``None`` for a plot: lossless
        only; see ``compact_image``); ``key``: what the picture is made from, for the image cache
        (``None``: not cached)."""
        if isinstance(img, tuple):
            mime, data, width = img[0], img[1], 0
        else:
            draw = lambda: compact_image(img, lossy=lossy)  # noqa: E731
            mime, data = draw() if key is None else self.cache.get(("picture", key, lossy), draw)
            width = img.width
        wide = width > WIDE_PICTURE
        tag = (f'<img src="{_data_uri(mime, data)}" alt="{esc(title)}"'
               + (f' width="{width}"' if wide else "") + ">")
        if wide:
            tag = f'<div class="wide">{tag}</div>'
        return (f'<figure class="pic{" pic-wide" if wide else ""}{extra_cls}">{tag}'
                f'<figcaption>{esc(title)}<div class="small">{sub}</div></figcaption></figure>')

    def pictures(self) -> str:
        """Per (metric, dataset, model), the cases' pictures: the k-th picture of every case
        stacked into one image (in the table's rank order), so the page has one picture where
        it had one per method; missing ones noted; superseded similarity plots left out."""
        parts, superseded = [], 0
        for metric, groups in self.groups.items():
            for (ds, mo), group in groups.items():
                higher = direction(group)
                ordered = [c for _, c in rank_group(group, higher)]
                stacks: dict[int, list[tuple[Case, str, Any]]] = {}
                figs, missing = [], []
                for case in ordered:
                    images = case.get("images") if isinstance(case.get("images"), list) else []
                    for k, image in enumerate(images):
                        title = text(image.get("title"), "") if isinstance(image, dict) else ""
                        if (metric, ds, mo) in self.drawn and title.startswith(
                                SUPERSEDED_PICTURES):
                            superseded += 1
                            continue
                        problem, file, img = self.load_picture(image)
                        if problem is not None:
                            missing.append(
                                f'<figure class="pic missing"><div class="missing-note">Image '
                                f'{esc(problem)}: <code>{esc(file)}</code></div><figcaption>'
                                f'{esc(title)}<div class="small">{esc(case.get("nodeid"))}</div>'
                                '</figcaption></figure>')
                        else:
                            if not isinstance(img, tuple):
                                kind = image.get("kind")
                                img.info["raster"] = (kind == "raster" if kind in ("raster", "plot")
                                                      else looks_raster(img))
                            stacks.setdefault(k, []).append((case, title, img))
                for k, items in stacks.items():
                    rasters = [it for it in items if not isinstance(it[2], tuple)]
                    for case, title, img in (it for it in items if isinstance(it[2], tuple)):
                        figs.append(self.picture_figure(img, title, esc(case.get("nodeid"))))

                    def lossy_of(ims: list) -> int | None:   # lossy coding for raster pictures only
                        return RASTER_QUALITY if all(im.info.get("raster") for im in ims) else None
                    widths = [im.width for _, _, im in rasters]
                    stackable = (len(rasters) > 1 and max(widths) <= 1300
                                 and max(widths) <= 1.3 * min(widths)
                                 and all(c.get("method") is not None for c, _, _ in rasters))
                    if not stackable:
                        for case, title, img in rasters:
                            figs.append(self.picture_figure(
                                img, title, esc(case.get("nodeid")), lossy=lossy_of([img]),
                                key=img.info.get("sha256")))
                    else:
                        names = ", ".join(method_label(c) for c, _, _ in rasters)
                        titles = "".join(f"<li>{esc(t)}</li>" for _, t, _ in rasters)
                        ims = [im for _, _, im in rasters]
                        figs.append(self.picture_figure(
                            stack_images(ims),
                            f"{rasters[0][1]} … ({len(rasters)} cases)",
                            f"one picture per case, in the table's order: {esc(names)}"
                            f"<details><summary>titles</summary><ul>{titles}</ul></details>",
                            " stack", lossy=lossy_of(ims),
                            key=("stack", [im.info.get("sha256") for im in ims])))
                figs += missing
                if figs:
                    parts.append(f'<h3>{esc(metric)} — {esc(ds)} / {esc(mo)}</h3>'
                                 f'<div class="pics">{"".join(figs)}</div>')
        if not parts:
            return ""
        note = (f'<p class="note">{superseded} per-case similarity plot(s) are not embedded: the '
                'sections\' small multiples draw the same curves (the files are in '
                '<code>assets/</code>).</p>' if superseded else "")
        return ('<section id="pictures"><h2>Pictures</h2>' + note + "\n".join(parts)
                + "</section>")

    # --- comparison -------------------------------------------------------------------------
    def comparison(self) -> str:
        old = self.compare or {}
        diff = compare_runs(old, self.results)
        orun = old.get("run") if isinstance(old.get("run"), dict) else {}
        parts = ['<section id="comparison"><h2>Comparison with an earlier run</h2>',
                 f'<p class="meta">Earlier run: started {esc(orun.get("started"))}, '
                 f'git {esc(orun.get("git"))}, scale {esc(orun.get("scale"))}; '
                 f'{diff["n_common"]} case(s) in both runs.</p>']
        if diff["same"]:
            parts.append(f'<p class="nochange" id="no-change">No change: all {diff["n_common"]} '
                         'case(s) have the same outcome, the same beats-baseline verdict and the '
                         'same score within noise; no case appeared or vanished.</p>')
        else:
            n = {k: len(diff[k]) for k in ("score_changes", "outcome_changes",
                                           "baseline_changes", "added", "removed")}
            parts.append('<p class="changed">Changed: ' + ", ".join(
                f"{v} {k.replace('_', ' ')}" for k, v in n.items() if v) + ".</p>")

        def table(tid: str, title: str, head: list[str], rows: list[list[str]]) -> None:
            if rows:
                th = "".join(f"<th>{h}</th>" for h in head)
                body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                               for r in rows)
                parts.append(f'<h3>{title}</h3><table class="plain" id="{tid}"><thead><tr>{th}'
                             f'</tr></thead><tbody>{body}</tbody></table>')

        code = lambda s: f"<code>{esc(s)}</code>"  # noqa: E731
        table("cmp-baseline", "Beats-baseline verdict changed", ["Case", "Before", "Now", ""],
              [[code(c["nodeid"]), esc(c["old"]), esc(c["new"]),
                '<span class="no">✗ no longer beats random</span>' if c["change"] == "lost"
                else '<span class="yes">✓ now beats random</span>']
               for c in diff["baseline_changes"]])
        table("cmp-outcome", "Outcome changed", ["Case", "Before", "Now"],
              [[code(c["nodeid"]), esc(c["old"]), esc(c["new"])] for c in diff["outcome_changes"]])
        table("cmp-score", "Scores that moved beyond the noise",
              ["Case", "Before", "Now", "Δ", "Noise tolerance", ""],
              [[code(c["nodeid"]), esc(fmt_num(c["old"])), esc(fmt_num(c["new"])),
                esc(fmt_signed(c["delta"])), esc(f'{fmt_num(c["tolerance"], 2)} ({c["noise"]})'),
                {True: '<span class="yes">better</span>', False: '<span class="no">worse</span>'}
                .get(c["better"], "")] for c in diff["score_changes"]])
        table("cmp-added", "New cases", ["Case"], [[code(c)] for c in diff["added"]])
        table("cmp-removed", "Vanished cases", ["Case"], [[code(c)] for c in diff["removed"]])
        table("cmp-run", "Run settings that differ (context)", ["Setting", "Before", "Now"],
              [[esc(c["key"]), esc(c["old"]), esc(c["new"])] for c in diff["run_changes"]])
        parts.append("</section>")
        return "\n".join(parts)
