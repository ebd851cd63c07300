"""Open the rendered report in headless Chromium and check what a reader would see.

The demo report is widened for this (a summary matrix of 15 columns, a picture 2,000 px wide), and
opened at 1024 px: nothing may stick out of the viewport but the matrix's and the wide picture's
scroll boxes. Screenshots at 1024 and 1600 px wide are kept in the test's folder.

No Python dependency beyond the standard library: Chromium's ``--dump-dom`` and ``--screenshot``.
The page itself has no JavaScript; the test loads a *copy* with a probe script added (and the
page's Content-Security-Policy widened for inline scripts only) that writes measurements into the
DOM after the load event, then parses them out of the dumped DOM. The unmodified page is dumped
too, to check that it loads and holds no <script> element.

Skipped when no Chromium is found (``SALIENCYBENCH_CHROMIUM``, ``chromium`` on PATH or
``/usr/bin/chromium``; Debian: ``apt-get install chromium``).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from suite.report import render
from suite.report.demo import INSERTION, ROAR, demo_results


def _chromium() -> str | None:
    for candidate in (os.environ.get("SALIENCYBENCH_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found (apt-get install chromium, or set SALIENCYBENCH_CHROMIUM)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
         "--window-size=1280,900"]

# Installed first thing in <head>: records errors (script errors, failed resources, CSP blocks).
EARLY = """<script>window.__errors = [];
addEventListener('error', function (e) {
  __errors.push(e.message || ('failed to load ' + (e.target && (e.target.src || e.target.href))));
}, true);
addEventListener('securitypolicyviolation', function (e) {
  __errors.push('CSP blocked ' + e.blockedURI); });</script>"""

# Runs at the load event: writes what it measured into <pre id="probe">.
PROBE = """<script>addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (im) {
    var r = im.getBoundingClientRect(), s = getComputedStyle(im);
    return {alt: im.alt, complete: im.complete, naturalWidth: im.naturalWidth,
            naturalHeight: im.naturalHeight, width: r.width, height: r.height,
            visible: s.display !== 'none' && s.visibility !== 'hidden' && im.offsetParent !== null};
  });
  var tables = Array.prototype.map.call(document.querySelectorAll('table'), function (t) {
    var body = t.tBodies[0];
    return {id: t.id, cls: t.className, group: t.getAttribute('data-group'),
            width: t.getBoundingClientRect().width,
            rows: body ? body.rows.length : 0,
            methods: body ? Array.prototype.map.call(body.rows, function (tr) {
              return tr.getAttribute('data-method'); }) : []};
  });
  var resources = performance.getEntriesByType('resource').map(function (e) { return e.name; });
  var vw = document.documentElement.clientWidth, over = [];
  Array.prototype.forEach.call(document.querySelectorAll('body *'), function (el) {
    if (el.closest('.matrix-box, .wide') || el.id === 'probe') return;
    var r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 1 || r.left < -1))
      over.push(el.tagName + '.' + el.className + '#' + el.id + ' right=' + Math.round(r.right));
  });
  var box = document.getElementById('matrix-box'), first = box.querySelector('tbody th');
  var wide = document.querySelector('.wide');
  var layout = {viewport: vw, over: over.slice(0, 20), scrollWidth: document.documentElement.scrollWidth,
    box: {right: box.getBoundingClientRect().right, client: box.clientWidth, scroll: box.scrollWidth},
    sticky: getComputedStyle(first).position,
    wide: wide && {right: wide.getBoundingClientRect().right, client: wide.clientWidth,
                   scroll: wide.scrollWidth}};
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({errors: window.__errors, images: imgs, tables: tables,
    resources: resources, title: document.title, height: document.body.scrollHeight, layout: layout,
    scripts: document.scripts.length});
  document.body.appendChild(pre);
});</script>"""


def _run(args: list[str], timeout: float = 60) -> str:
    with tempfile.TemporaryDirectory(prefix="sb-chromium-") as profile:
        proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _probe_copy(page: str) -> str:
    assert "script-src" not in page
    page = page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';",
                        1)
    page = page.replace("<head>", "<head>\n" + EARLY, 1)
    return page.replace("</body>", PROBE + "\n</body>", 1)


WIDE_DATASETS = [f"d{i:02d}" for i in range(12)]


def _wide_demo(out):
    """The demo plus 12 more insertion groups (a summary matrix wider than 1024 px) and a
    picture 2,000 px wide."""
    from PIL import Image

    results = demo_results(out)
    extra = []
    for ds in WIDE_DATASETS:
        for c in results["cases"]:
            if c["metric"] == "insertion":
                extra.append({**c, "dataset": ds, "curves": [], "images": [], "details": {},
                              "outcome": "passed",
                              "nodeid": c["nodeid"].replace("[digits-", f"[{ds}-")})
    results["cases"] += extra
    Image.new("RGB", (2000, 120), (40, 90, 160)).save(out / "assets" / "wide.png")
    results["cases"][0]["images"] = [{"title": "a wide picture", "file": "assets/wide.png"}]
    return results


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Render the widened demo report, then (in parallel) dump the original page's DOM, dump the
    probed copy's DOM at 1024 px, and take screenshots 1024 and 1600 px wide."""
    out = tmp_path_factory.mktemp("report")
    index = render(_wide_demo(out), out)
    probed = out / "probed.html"
    probed.write_text(_probe_copy(index.read_text(encoding="utf-8")), encoding="utf-8")
    shots = {w: out / f"screenshot-{w}.png" for w in (1024, 1600)}
    budget = "--virtual-time-budget=5000"
    jobs = [["--dump-dom", budget, index.as_uri()],
            ["--dump-dom", "--window-size=1024,900", budget, probed.as_uri()]]
    jobs += [[f"--screenshot={shot}", f"--window-size={w},3000", budget, index.as_uri()]
             for w, shot in shots.items()]
    with ThreadPoolExecutor(len(jobs)) as pool:
        plain_dom, probed_dom, *_ = pool.map(_run, jobs)
    match = re.search(r'<pre id="probe">(.*?)</pre>', probed_dom, re.S)
    assert match, "the probe did not run: " + probed_dom[-500:]
    return {"plain": plain_dom, "probe": json.loads(html.unescape(match.group(1))),
            "shots": shots}


def test_page_loads_without_errors_or_requests(browser):
    probe = browser["probe"]
    assert probe["errors"] == []
    assert probe["resources"] == []  # images are data URIs: nothing was fetched
    assert probe["title"].startswith("saliencybench report")
    assert probe["scripts"] == 2  # only the probe's own two


def test_original_page_has_no_script_and_renders(browser):
    dom = browser["plain"]
    assert "<script" not in dom.lower()  # the <script> inside a nodeid stayed text
    assert "&lt;script&gt;" in dom
    assert 'id="summary-matrix"' in dom


def test_plots_are_visible_images_of_non_zero_size(browser):
    images = browser["probe"]["images"]
    plots = [im for im in images if im["alt"].endswith("curves")]
    assert [im["alt"] for im in plots] == ["insertion — digits / simplecnn curves",
                                          "roar — digits / simplecnn curves"]
    assert len(images) == 4   # two small multiples, the demo's picture, the wide picture
    for im in images:         # every image decoded, shown, of non-zero size
        assert im["complete"] and im["visible"], im
        assert im["naturalWidth"] > 100 and im["naturalHeight"] > 50, im
        assert im["width"] > 100 and im["height"] > 50, im
    # small multiples of 5 method panels + the difference panel: 4 columns of 2.25 in, 2 rows of
    # 1.3 in, fixed margins, 100 dpi
    assert all(im["naturalWidth"] == 962 and im["naturalHeight"] == 392 for im in plots)
    assert all(im["width"] <= 1024 - 64 for im in plots)   # scaled into the page at 1024 px
    wide = [im for im in images if im["alt"] == "a wide picture"][0]
    assert wide["width"] == 2000                            # at its own size, in its scroll box


def test_nothing_wider_than_the_viewport_but_the_scroll_boxes(browser):
    layout = browser["probe"]["layout"]
    assert layout["viewport"] == 1024
    assert layout["over"] == []
    assert layout["scrollWidth"] <= 1024                   # the page itself never scrolls sideways
    box = layout["box"]
    assert box["right"] <= 1024 and box["scroll"] > box["client"]   # the matrix scrolls inside
    assert layout["sticky"] == "sticky"                    # ... with its method column in view
    wide = layout["wide"]
    assert wide["right"] <= 1024 and wide["scroll"] >= 2000 > wide["client"]


def test_tables_hold_the_expected_rows(browser):
    tables = browser["probe"]["tables"]
    by_group = {t["group"]: t for t in tables if t["group"]}
    assert by_group["roar/digits/simplecnn"]["methods"] == sorted(ROAR, key=ROAR.get)
    assert by_group["insertion/digits/simplecnn"]["methods"] == sorted(
        INSERTION, key=INSERTION.get, reverse=True)
    assert "roar/cifar10/resnet8" not in by_group        # folded into one line
    by_id = {t["id"]: t for t in tables if t["id"]}
    assert by_id["summary-matrix"]["rows"] == 6
    assert by_id["skipped-datasets"]["rows"] == 1
    assert by_id["failures"]["rows"] == 2
    assert by_id["table-accuracy"]["rows"] == 2
    assert all(t["width"] > 0 for t in tables)


def test_screenshots_are_real_pictures(browser):
    from PIL import Image

    for width, shot in browser["shots"].items():
        with Image.open(shot) as im:
            assert im.size == (width, 3000)
            colors = im.convert("RGB").resize((64, 240)).getcolors(64 * 240)
        assert colors is not None and len(colors) > 20  # not a blank page
