"""Open the rendered report in headless Chromium and check what a reader would see.

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
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({errors: window.__errors, images: imgs, tables: tables,
    resources: resources, title: document.title, height: document.body.scrollHeight,
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Render the demo report, then (in parallel) dump the original page's DOM, dump the probed
    copy's DOM and take a full screenshot."""
    out = tmp_path_factory.mktemp("report")
    index = render(demo_results(out), out)
    probed = out / "probed.html"
    probed.write_text(_probe_copy(index.read_text(encoding="utf-8")), encoding="utf-8")
    shot = out / "screenshot.png"
    budget = "--virtual-time-budget=5000"
    jobs = [["--dump-dom", budget, index.as_uri()],
            ["--dump-dom", budget, probed.as_uri()],
            [f"--screenshot={shot}", "--window-size=1280,4800", budget, index.as_uri()]]
    with ThreadPoolExecutor(len(jobs)) as pool:
        plain_dom, probed_dom, _ = pool.map(_run, jobs)
    match = re.search(r'<pre id="probe">(.*?)</pre>', probed_dom, re.S)
    assert match, "the probe did not run: " + probed_dom[-500:]
    return {"plain": plain_dom, "probe": json.loads(html.unescape(match.group(1))), "shot": shot}


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
    for im in images:
        assert im["complete"] and im["visible"], im
        assert im["naturalWidth"] > 100 and im["naturalHeight"] > 50, im
        assert im["width"] > 100 and im["height"] > 50, im
    assert all(im["naturalWidth"] == 720 and im["naturalHeight"] == 380 for im in plots)


def test_tables_hold_the_expected_rows(browser):
    tables = browser["probe"]["tables"]
    by_group = {t["group"]: t for t in tables if t["group"]}
    assert by_group["roar/digits/simplecnn"]["methods"] == sorted(ROAR, key=ROAR.get)
    assert by_group["insertion/digits/simplecnn"]["methods"] == sorted(
        INSERTION, key=INSERTION.get, reverse=True)
    assert by_group["roar/cifar10/resnet8"]["rows"] == 1
    by_id = {t["id"]: t for t in tables if t["id"]}
    assert by_id["summary-matrix"]["rows"] == 6
    assert by_id["skipped-datasets"]["rows"] == 1
    assert by_id["failures"]["rows"] == 2
    assert by_id["table-accuracy"]["rows"] == 3
    assert all(t["width"] > 0 for t in tables)


def test_screenshot_is_a_real_picture(browser):
    from PIL import Image

    with Image.open(browser["shot"]) as im:
        assert im.size == (1280, 4800)
        colors = im.convert("RGB").resize((64, 240)).getcolors(64 * 240)
    assert colors is not None and len(colors) > 20  # not a blank page
