"""Render a saved report's page from its results.json and print the time and the size per section.

    PYTHONPATH=. python benchmarks/bench_report_page.py SAVED_REPORT_DIR [WORK_DIR] [--cache DIR]

SAVED_REPORT_DIR (a ``reports/latest`` with results.json and assets/) is copied to WORK_DIR
(default: a temporary folder) and rendered there; ``--cache DIR`` renders twice with the image
cache (``suite.report.plots.ImageCache``) and prints both times. Sizes: the page, its embedded
images, each section, and the biggest picture groups.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from suite.report.page import render

args = [a for a in sys.argv[1:]]
cache = None
if "--cache" in args:
    i = args.index("--cache")
    cache = Path(args[i + 1])
    del args[i:i + 2]
src = Path(args[0])
dst = Path(args[1]) if len(args) > 1 else Path(tempfile.mkdtemp()) / "report"
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree(src, dst)
res = json.load(open(dst / "results.json"))
for attempt in range(2 if cache is not None else 1):
    t = time.perf_counter()
    render(res, dst, image_cache=cache)
    print(f"render{' (cache warm)' if attempt else ''}: {time.perf_counter() - t:.2f} s")
page = (dst / "index.html").read_text()
print(f"index.html {len(page.encode()) / 1e6:.3f} MB")
uris = re.findall(r'data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)', page)
print(f"{len(uris)} images, {sum(len(u[1]) for u in uris) / 1e6:.3f} MB")
for m in re.finditer(r'<section id="([^"]+)"[^>]*>(.*?)</section>', page, re.S):
    print(f"  section {m.group(1):28s} {len(m.group(0).encode()) / 1e6:.3f} MB")
pics = re.search(r'<section id="pictures">(.*?)</section>', page, re.S)
if pics:
    chunks = re.split(r'(<h3>[^<]*</h3>)', pics.group(1))
    rows = sorted(((len(body), re.sub("<.*?>", "", h)) for h, body in
                   zip(chunks[1::2], chunks[2::2])), reverse=True)
    for n, h in rows[:12]:
        print(f"    {n / 1e6:.3f} MB  {h}")
