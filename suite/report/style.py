"""The report page's stylesheet (inline in the page: it loads nothing)."""
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
main, section, .group { min-width:0; }
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
i.sw { display:inline-block; width:20px; height:0; vertical-align:middle; margin-right:5px; }
p.legend { margin:6px 0 0; font-size:12px; color:var(--muted); line-height:1.9; }
p.legend .lg { white-space:nowrap; margin-right:10px; color:var(--fg); }
p.meaning { font-weight:500; margin:2px 0 8px; max-width:960px; }
ul.skips { margin:0 0 10px; padding-left:18px; color:var(--muted); font-size:13px; }
ul.skips li.absent { list-style:none; margin-left:-18px; }
.why { color:var(--bad); font-size:12.5px; overflow-wrap:anywhere; }
td.reason { min-width:10em; max-width:34em; overflow-wrap:anywhere; font-size:12.5px; }
table.ranking, table.plain { max-width:100%; }
table.ranking { font-size:13px; }
table.ranking th, table.ranking td { padding:4px 6px; }
table.ranking thead th { font-size:12.5px; }
span.ci { display:block; position:relative; height:10px; width:100%; max-width:130px; background:var(--panel);
  border-radius:2px; margin:2px 0; }
span.ci-zero { position:absolute; left:50%; top:0; bottom:0; border-left:1px dashed #000; }
span.ci-bar { position:absolute; top:3px; height:4px; background:#57606a; border-radius:2px; }
span.ci-dot { position:absolute; top:1px; width:8px; height:8px; margin-left:-4px;
  border-radius:50%; background:#000; }
td.pair { min-width:9em; max-width:12em; }
td.pair .num { text-align:left; }
table.agreement td.tau { text-align:center; min-width:54px; font-variant-numeric:tabular-nums; }
table.agreement td.tau-none { color:#999; background:#f3f3f3; }
figure.agree { border:1px solid var(--line); border-radius:6px; padding:6px; max-width:100%;
  overflow-x:auto; }
.group { margin:0 0 26px; padding:4px 0 8px; border-bottom:1px dashed var(--line); }
figure { margin:0; }
figure.plot img { display:block; max-width:100%; height:auto; border:1px solid var(--line);
  border-radius:4px; }
.matrix-box { overflow-x:auto; max-width:100%; border:1px solid var(--line); border-radius:4px; }
table.matrix { margin:0; }
table.matrix tbody th, table.matrix thead tr:first-child th:first-child { position:sticky; left:0;
  z-index:1; background:var(--bg); box-shadow:1px 0 0 var(--line); }
table.matrix thead tr:first-child th:first-child { background:var(--panel); }
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
figure.pic { max-width:100%; border:1px solid var(--line); border-radius:6px; padding:6px; }
figure.pic-wide { width:100%; }
.wide { overflow-x:auto; max-width:100%; }
.wide img { max-width:none !important; }
figure.pic details { display:inline; }
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
