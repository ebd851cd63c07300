"""The HTML report: one self-contained file (inline CSS, images as data URIs, no JavaScript).

Named ``page`` rather than ``html`` so it never shadows the standard library's ``html`` module.
"""
from __future__ import annotations

import base64
import html
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .compare import compare_runs
from .plots import curves_png, method_colors
from .records import (BASELINE_METHOD, OUTCOME_LABELS, Case, advantage,
                      as_score, baseline_score, cases_of, details, direction, direction_text,
                      expectation, fmt_duration, fmt_num, fmt_signed, group_baseline, is_plain,
                      group_cases, mean_rank, method_label, other_skips, outcome_counts,
                      rank_group, run_duration_s, skipped_datasets, summary_matrix, text)
from .tables import write_csv

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}
# No network, no scripts: the page can only use itself.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: Any) -> str:
    return html.escape(text(value), quote=True)


def render(results: dict, out_dir: Path, compare: dict | None = None) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/results.csv``; return the index path.

    ``results`` is a results.json dict (schema 1). ``compare``, when given, is an earlier run's
    results dict; the page then gets a section listing what changed (see ``compare_runs``).
    Image files named by cases are read relative to ``out_dir``. Output depends only on the input.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    _write_atomic(index, _Page(results, out_dir, compare).build())
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


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _Page:
    def __init__(self, results: dict, out_dir: Path, compare: dict | None):
        self.results = results
        self.run = results.get("run") if isinstance(results.get("run"), dict) else {}
        self.out_dir = out_dir
        self.compare = compare
        self.groups = group_cases(results)
        self.colors = method_colors(method_label(c) for c in cases_of(results))
        self.ids: set[str] = set()

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
        self.ids.update({"overview", "summary", "comparison", "pictures", "studies"})
        if self.compare is not None:
            sections.append(("comparison", "Comparison", self.comparison()))
        for metric, groups in self.groups.items():
            sid = self.anchor("metric", metric)
            sections.append((sid, metric, self.metric_section(sid, metric, groups)))
        pictures = self.pictures()
        if pictures:
            sections.append(("pictures", "Pictures", pictures))
        from .studies import section as studies_section   # Samek Fig. 4, model table, ...
        studies = studies_section(self.results)
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
<nav>{nav}</nav></header>
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
                f'<td><code>{esc(c.get("nodeid"))}</code></td></tr>' for c in notable)
            side.append('<h3>Failed and unexpected cases</h3><table class="plain" id="failures">'
                        '<thead><tr><th>Outcome</th><th>Case</th></tr></thead>'
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
            body.append(f'<tr data-method="{esc(method)}"{base_cls}><th>{esc(method)}</th>'
                        f'<td class="num">{"—" if mr is None else f"{mr:.2f}"}</td>'
                        f'<td class="num">{wins}</td>{"".join(tds)}</tr>')
        return (head + '<p class="lead">Each cell: the method\'s rank within its metric, dataset '
                'and model (1 = best, given the metric\'s direction ↑/↓), and below it the score '
                'relative to the random baseline (+ = better than random). Green: beats random; '
                'red: worse than random; dark green: best in the column; ✗: the case failed. '
                'Rows are sorted by mean rank.</p>'
                '<div class="scroll"><table class="matrix" id="summary-matrix"><thead>'
                f'<tr><th rowspan="2">Method</th><th rowspan="2">Mean rank</th>'
                f'<th rowspan="2">Wins</th>{h1}</tr><tr>{h2}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table></div></section>')

    # --- per-metric sections ----------------------------------------------------------------
    def outcome_cell(self, case: Case) -> str:
        outcome = text(case.get("outcome"), "unknown")
        label = OUTCOME_LABELS.get(outcome, outcome)
        if outcome == "failed":
            label = "✗ FAILED"
        elif outcome == "error":
            label = "⚠ ERROR"
        reason = details(case).get("reason")
        extra = f'<div class="small">{esc(reason)}</div>' if reason else ""
        error = details(case).get("error") if outcome in ("failed", "error") else None
        if error:
            short = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            extra += (f'<details class="small err"><summary>{esc(short)}</summary>'
                      f'<pre>{esc(error)}</pre></details>')
        return f'<span class="o o-{esc(outcome)}">{esc(label)}</span>{extra}'

    def duration_cell(self, case: Case) -> str:
        cached = ' <span class="tag">cached</span>' if details(case).get("from_cache") else ""
        return f"{esc(fmt_duration(case.get('duration_s')))}{cached}"

    def metric_section(self, sid: str, metric: str, groups: dict) -> str:
        parts = [f'<section id="{sid}" class="metric"><h2>{esc(metric)}</h2>']
        if is_plain(metric, groups):
            rows = "".join(
                f'<tr class="row-{esc(c.get("outcome"))}" title="{esc(c.get("nodeid"))}">'
                f'<td>{esc(ds)}</td><td>{esc(mo)}</td>'
                f'<td class="num">{esc(fmt_num(c.get("score")))}</td>'
                f'<td>{self.outcome_cell(c)}</td><td class="num">{self.duration_cell(c)}</td></tr>'
                for (ds, mo), group in groups.items() for c in group)
            higher = direction(c for g in groups.values() for c in g)
            parts.append(f'<p class="meta">{esc(direction_text(higher))}</p>'
                         f'<table class="plain accuracy" id="{self.anchor("table", metric)}">'
                         '<thead><tr><th>Dataset</th><th>Model</th><th>Score</th><th>Outcome</th>'
                         f'<th>Duration</th></tr></thead><tbody>{rows}</tbody></table>')
        else:
            for (ds, mo), group in groups.items():
                parts.append(self.group_block(metric, ds, mo, group))
        parts.append("</section>")
        return "\n".join(parts)

    def group_block(self, metric: str, dataset: str, model: str, group: list[Case]) -> str:
        higher = direction(group)
        base = group_baseline(group)
        gid = self.anchor(metric, dataset, model)
        title = f"{metric} — {dataset} / {model}"
        ranked = rank_group(group, higher)
        png = curves_png([c for _, c in ranked], title, self.colors, direction_text(higher))
        if png is None:
            plot = '<p class="note">No curves recorded for this group.</p>'
        else:
            plot = (f'<figure class="plot"><img src="{_data_uri("image/png", png)}" '
                    f'alt="{esc(title)} curves"></figure>')
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
            exp = expectation(case)
            exp_html = "—"
            if exp:
                exp_html = (f'expected to {esc(exp.get("expected"))}'
                            + (f'<div class="small">{esc(exp.get("source"))}</div>'
                               if exp.get("source") else ""))
            swatch = f'<i class="sw" style="background:{self.colors.get(method, "#666")}"></i>'
            rows.append(
                f'<tr class="row-{esc(case.get("outcome"))}{" is-base" if is_base else ""}" '
                f'data-method="{esc(method)}" data-rank="{"" if rank is None else rank}">'
                f'<td class="num">{"—" if rank is None else rank}</td>'
                f'<td class="name" title="{esc(case.get("nodeid"))}">{swatch}{esc(method)}</td>'
                f'<td class="num">{esc(score)}</td>'
                f'<td class="num">{esc(fmt_num(row_base))}</td>'
                f'<td class="num">{esc(fmt_signed(adv))}</td><td>{beats_html}</td>'
                f'<td>{exp_html}</td><td>{self.outcome_cell(case)}</td>'
                f'<td class="num">{self.duration_cell(case)}</td></tr>')
        arrow = {True: "↑", False: "↓"}.get(higher, "?")
        meta = (f'<b>{esc(direction_text(higher))}</b> · random baseline score '
                f'{esc(fmt_num(base))} · {len(group)} case(s)')
        return (f'<div class="group" id="{gid}"><h3>{esc(dataset)} / {esc(model)}</h3>'
                f'<p class="meta">{meta}</p>{plot}'
                f'<table class="ranking" data-group="{esc(metric)}/{esc(dataset)}/{esc(model)}">'
                f'<caption>Methods ranked by score ({esc(direction_text(higher))})</caption>'
                f'<thead><tr><th>Rank</th><th>Method</th><th>Score {arrow}</th>'
                '<th>Baseline</th><th>vs random</th><th>Beats baseline</th><th>Expectation</th>'
                f'<th>Outcome</th><th>Duration</th></tr></thead><tbody>{"".join(rows)}</tbody>'
                '</table></div>')

    # --- pictures ---------------------------------------------------------------------------
    def image_html(self, case: Case, image: Any) -> str:
        if not isinstance(image, dict):
            return '<div class="pic missing">Unreadable image record.</div>'
        title, file = text(image.get("title"), ""), text(image.get("file"), "")
        caption = f'<figcaption>{esc(title)}<div class="small">{esc(case.get("nodeid"))}</div>'
        root = self.out_dir.resolve()
        path = (self.out_dir / file).resolve()
        problem = None
        if not file or not path.is_relative_to(root):
            problem = "outside the report folder"
        elif not path.is_file():
            problem = "missing"
        if problem is None:
            try:
                data = path.read_bytes()
            except OSError as e:
                problem = f"unreadable ({e.strerror})"
        if problem is not None:
            return (f'<figure class="pic missing"><div class="missing-note">Image {esc(problem)}: '
                    f'<code>{esc(file)}</code></div>{caption}</figcaption></figure>')
        mime = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return (f'<figure class="pic"><img src="{_data_uri(mime, data)}" alt="{esc(title)}">'
                f'{caption}</figcaption></figure>')

    def pictures(self) -> str:
        parts = []
        for metric, groups in self.groups.items():
            for (ds, mo), group in groups.items():
                figs = [self.image_html(c, im) for c in group
                        if isinstance(c.get("images"), list) for im in c["images"]]
                if figs:
                    parts.append(f'<h3>{esc(metric)} — {esc(ds)} / {esc(mo)}</h3>'
                                 f'<div class="pics">{"".join(figs)}</div>')
        if not parts:
            return ""
        return '<section id="pictures"><h2>Pictures</h2>' + "\n".join(parts) + "</section>"

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


STYLE = """
:root { --fg:#1d232a; --muted:#5b6570; --line:#dfe3e8; --bg:#ffffff; --panel:#f6f8fa;
  --good:#1a7f37; --good-bg:#dafbe1; --bad:#cf222e; --bad-bg:#ffebe9; --warn:#9a6700;
  --warn-bg:#fff8c5; --best:#116329; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  color:var(--fg); background:var(--bg); }
header { padding:18px 32px 10px; border-bottom:1px solid var(--line); background:var(--panel); }
h1 { margin:0 0 2px; font-size:22px; }
.sub { margin:0 0 8px; color:var(--muted); }
nav a { display:inline-block; margin:0 12px 4px 0; color:#0969da; text-decoration:none; }
nav a:hover { text-decoration:underline; }
main { padding:8px 32px 32px; max-width:1400px; }
section { margin-top:26px; }
h2 { font-size:19px; border-bottom:2px solid var(--line); padding-bottom:4px; margin:0 0 12px; }
h3 { font-size:15px; margin:18px 0 6px; }
code { font:12px ui-monospace,"DejaVu Sans Mono",monospace; word-break:break-all; }
.small { font-size:12px; color:var(--muted); }
.note, .meta, .lead { color:var(--muted); margin:4px 0 8px; }
.lead { max-width:900px; }
ul.verdicts { list-style:none; padding:0; margin:0 0 12px; }
ul.verdicts li { padding:7px 12px; border-radius:6px; margin-bottom:5px; font-weight:500; }
li.good { background:var(--good-bg); color:var(--good); }
li.good::before { content:"✓ "; }
li.bad { background:var(--bad-bg); color:var(--bad); }
li.bad::before { content:"✗ "; }
li.warn { background:var(--warn-bg); color:var(--warn); }
li.warn::before { content:"⚠ "; }
.counts { display:flex; flex-wrap:wrap; gap:10px; margin:6px 0 10px; }
.count { min-width:110px; padding:8px 12px; border:1px solid var(--line); border-radius:8px;
  background:var(--panel); }
.count .n { display:block; font-size:22px; font-weight:700; }
.count .k { color:var(--muted); font-size:12px; }
.count.o-failed .n { color:var(--bad); } .count.o-passed .n { color:var(--good); }
.count.o-xpassed .n { color:var(--warn); }
.cols { display:grid; grid-template-columns:minmax(280px,420px) 1fr; gap:28px; }
@media (max-width: 900px) { .cols { grid-template-columns:1fr; } }
table { border-collapse:collapse; margin:6px 0 10px; }
th, td { padding:4px 9px; border-bottom:1px solid var(--line); text-align:left;
  vertical-align:top; }
thead th { background:var(--panel); font-weight:600; border-bottom:2px solid var(--line); }
table.meta th { font-weight:500; color:var(--muted); background:none; }
caption { caption-side:top; text-align:left; color:var(--muted); font-size:12px; padding:2px 0; }
td.name, .o-failed { white-space:nowrap; }
table.meta td { word-break:break-all; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.row-failed td, tr.row-error td { background:var(--bad-bg); }
details.err pre { white-space:pre-wrap; max-width:60em; font-size:11px; }
tr.row-xpassed td { background:var(--warn-bg); }
tr.row-skipped td { color:var(--muted); }
tr.is-base td { font-style:italic; }
.o { font-weight:500; }
.o-passed { color:var(--good); } .o-failed, .o-error { color:var(--bad); font-weight:700; }
.o-xfailed { color:var(--muted); } .o-xpassed { color:var(--warn); }
.o-skipped { color:var(--muted); }
.yes { color:var(--good); font-weight:600; } .no { color:var(--bad); font-weight:600; }
.base { color:var(--muted); }
.tag { font-size:11px; color:var(--muted); border:1px solid var(--line); border-radius:4px;
  padding:0 4px; }
i.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; }
.group { margin:0 0 26px; padding:4px 0 8px; border-bottom:1px dashed var(--line); }
figure { margin:0; }
figure.plot img { display:block; max-width:100%; height:auto; border:1px solid var(--line);
  border-radius:4px; }
.scroll { overflow-x:auto; }
table.matrix th, table.matrix td { text-align:center; border:1px solid var(--line); }
table.matrix tbody th { text-align:left; }
table.matrix th.mhead { background:#eaeef2; }
table.matrix td.c { min-width:64px; }
table.matrix td .adv { display:block; font-size:11px; color:var(--muted); }
td.c-best { background:#aceebb; } td.c-best b { color:var(--best); }
td.c-better { background:var(--good-bg); } td.c-worse { background:var(--bad-bg); }
td.c-base { background:#eaeef2; } td.c-none { color:#bbb; }
td.c-failed { outline:2px solid var(--bad); outline-offset:-2px; }
tr.is-base th { font-style:italic; }
.pics { display:flex; flex-wrap:wrap; gap:14px; }
figure.pic { max-width:420px; border:1px solid var(--line); border-radius:6px; padding:6px; }
figure.pic img { display:block; max-width:100%; height:auto; image-rendering:auto; }
figure.pic figcaption { font-size:13px; margin-top:4px; }
figure.missing { background:var(--warn-bg); }
.missing-note { color:var(--warn); font-weight:600; padding:12px 4px; }
p.nochange { background:var(--good-bg); color:var(--good); padding:8px 12px; border-radius:6px;
  font-weight:600; }
p.changed { background:var(--warn-bg); color:var(--warn); padding:8px 12px; border-radius:6px;
  font-weight:600; }
footer { padding:16px 32px; color:var(--muted); font-size:12px; border-top:1px solid var(--line); }
"""
