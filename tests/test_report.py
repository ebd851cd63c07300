"""Unit tests of suite.report on hand-made records: values, not just existence."""
from __future__ import annotations

import base64
import copy
import csv
from html.parser import HTMLParser

import pytest

from suite.report import compare_runs, render, summary_lines, write_csv
from suite.report.demo import INSERTION, ROAR, demo_results
from suite.report.records import rank_group, skipped_datasets

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None, **attrs):
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(
                        (v in c.attrs.get(k.rstrip("_"), "").split()) if k == "class_"
                        else c.attrs.get(k) == v for k, v in attrs.items()):
                    yield c
                yield from c.iter(tag, **attrs)

    def find(self, tag: str | None = None, **attrs) -> "Node":
        found = next(self.iter(tag, **attrs), None)
        assert found is not None, f"no <{tag} {attrs}>"
        return found


class _Tree(HTMLParser):
    """A tiny DOM: enough to find tables and rows in the page without a third-party parser."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(page: str) -> Node:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    return tree.root


def ranking(doc: Node, group: str) -> list[tuple[str, str, list[str]]]:
    """(method, rank, row classes) of a ranking table, in page order."""
    table = doc.find("table", class_="ranking", **{"data-group": group})
    return [(tr.attrs["data-method"], tr.attrs["data-rank"], tr.attrs.get("class", "").split())
            for tr in table.find("tbody").iter("tr")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    results = demo_results(out)
    index = render(results, out)
    return results, out, index, index.read_text(encoding="utf-8")


def case(nodeid, method, score, *, metric="roar", higher=False, outcome="passed", **kw):
    c = {"nodeid": nodeid, "metric": metric, "dataset": "digits", "model": "simplecnn",
         "method": method, "outcome": outcome, "duration_s": 1.0, "score": score,
         "higher_is_better": higher, "baseline": None, "beats_baseline": None, "curves": [],
         "details": {}}
    c.update(kw)
    return c


def results_of(*cases, **run):
    return {"schema": 1, "run": {"started": "2024-01-01T00:00:00", "scale": "small", **run},
            "cases": list(cases)}


# --- page ---------------------------------------------------------------------------------------

def test_render_returns_index_and_writes_one_self_contained_page(demo):
    results, out, index, page = demo
    assert index == out / "index.html" and (out / "results.csv").is_file()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower() and "<link" not in page.lower()
    doc = parse(page)
    refs = [v for node in doc.iter() for k, v in node.attrs.items()
            if k in ("src", "href", "srcset", "action", "poster", "data")]
    assert refs and all(v.startswith(("data:", "#")) for v in refs), "external reference"
    assert "url(" not in page  # nothing fetched from CSS either
    ids = [node.attrs["id"] for node in doc.iter() if "id" in node.attrs]
    assert len(ids) == len(set(ids)), "duplicate element ids"
    assert all(f'id="{v[1:]}"' in page for v in refs if v.startswith("#")), "a dead link"
    imgs = list(doc.iter("img"))
    assert len(imgs) == 3  # insertion plot, roar digits plot, one existing picture
    assert all(i.attrs["src"].startswith(("data:image/png;base64,", "data:image/webp;base64,"))
               for i in imgs)


def test_ranking_lower_is_better(demo):
    rows = ranking(parse(demo[3]), "roar/digits/simplecnn")
    expected = sorted(ROAR, key=ROAR.get)  # lower first
    assert [m for m, _, _ in rows] == expected
    assert [r for _, r, _ in rows] == [str(i) for i in range(1, len(ROAR) + 1)]
    by_method = {m: cls for m, _, cls in rows}
    assert "row-failed" in by_method["grad"] and "is-base" in by_method["random"]
    assert "row-failed" not in by_method["intgrad"]
    assert "lower is better" in parse(demo[3]).find("table", **{
        "data-group": "roar/digits/simplecnn"}).find("caption").text()


def test_ranking_higher_is_better_and_outcomes(demo):
    doc = parse(demo[3])
    rows = ranking(doc, "insertion/digits/simplecnn")
    assert [m for m, _, _ in rows] == sorted(INSERTION, key=INSERTION.get, reverse=True)
    table = doc.find("table", **{"data-group": "insertion/digits/simplecnn"})
    assert "higher is better" in table.find("caption").text()
    cells = {tr.attrs["data-method"]: [td.text() for td in tr.iter("td")]
             for tr in table.find("tbody").iter("tr")}
    # columns: rank, method, score, baseline, vs random, paired CI, beats, outcome,
    # reason / expectation, duration
    assert cells["oracle"][2] == "0.93 ± 0.01" and cells["oracle"][3] == "0.41"
    assert cells["oracle"][4] == "+0.52" and "yes" in cells["oracle"][6]
    assert cells["oracle"][5].startswith("+0.52 [+0.47, +0.57]") and "better" in cells["oracle"][5]
    assert "p(Holm) 0.004" in cells["oracle"][5] and "n=64, images, bootstrap" in cells[
        "oracle"][5]
    assert "overlaps 0" in cells["sobel"][5]          # [-0.02, +0.08] holds 0
    assert cells["random"][5] == "—"
    assert "cached" in cells["oracle"][9]
    assert cells["grad"][7].startswith("xfailed") and "gradient saturation" in cells["grad"][8]
    assert "expected to fail" in cells["grad"][8] and "Hooker et al. 2019" in cells["grad"][8]
    assert cells["sobel"][7].startswith("xpassed") and "Adebayo" in cells["sobel"][8]
    assert cells["random"][6] == "baseline"


def test_rank_ties_share_rank_and_unscored_cases_come_last():
    group = [case("a", "a", 0.5, higher=True), case("b", "b", 0.9, higher=True),
             case("c", "c", 0.5, higher=True), case("d", "d", None, higher=True,
                                                     outcome="skipped")]
    assert [(r, c["method"]) for r, c in rank_group(group, True)] == [
        (1, "b"), (2, "a"), (2, "c"), (None, "d")]
    assert [(r, c["method"]) for r, c in rank_group(group, False)] == [
        (1, "a"), (1, "c"), (3, "b"), (None, "d")]
    assert [r for r, _ in rank_group(group, None)] == [None] * 4  # direction unknown: no ranks


def test_overview_counts_skips_and_failures(demo):
    doc = parse(demo[3])
    overview = doc.find("section", id="overview")
    counts = {box.find("span", class_="k").text(): int(box.find("span", class_="n").text())
              for box in overview.iter("div", class_="count")}
    assert counts == {"passed": 13, "failed (verdict)": 1, "xfailed (expected failure)": 1,
                      "xpassed (unexpectedly passed)": 1, "skipped": 3}
    skipped = [[td.text() for td in tr.iter("td")]
               for tr in overview.find("table", id="skipped-datasets").find("tbody").iter("tr")]
    assert [row[0] for row in skipped] == ["cifar10"]  # once, although named three times
    failures = overview.find("table", id="failures")
    assert "test_roar[digits-simplecnn-grad]" in failures.text() and "sobel" in failures.text()
    rows = {tr.find("code").text(): [td for td in tr.iter("td")]
            for tr in failures.find("tbody").iter("tr")}
    grad = rows["cases/test_roar.py::test_roar[digits-simplecnn-grad]"]
    # the reason in place: the assertion message without pytest's echo, then the expectation
    assert grad[2].find("div", class_="why").text() == (
        "grad does not beat the random baseline under roar on digits/simplecnn: score 0.58 vs "
        "random 0.52 (lower is better; advantage -0.06 <= required margin 0.0104)")
    assert "Hooker et al. 2019" in grad[2].text()
    assert grad[1].find("a").attrs["href"] == "#g-roar-digits-simplecnn"
    verdicts = [li.attrs["class"] for li in overview.find("ul", class_="verdicts").iter("li")]
    assert verdicts == ["bad", "warn", "warn"]  # failed; xpassed; skipped dataset
    meta = overview.find("table", id="run-meta").text()
    for expected in ("3 min 25 s", "small", "cpu", "0, 1", "0123456789abcdef", "2.3.0"):
        assert expected in meta


def test_skipped_datasets_deduplicated_from_run_and_cases():
    results = results_of(
        case("x1", "grad", None, outcome="skipped", dataset="cifar10",
             details={"reason": "not downloaded"}),
        case("x2", "random", None, outcome="skipped", dataset="cifar10",
             details={"reason": "not downloaded"}),
        case("y1", "grad", None, outcome="skipped", dataset="svhn", details={}),
        case("z1", "grad", 0.3, dataset="digits"),
        case("z2", "intgrad", None, outcome="skipped", dataset="digits",
             details={"reason": "no GPU"}),
        skipped_datasets={"cifar10": "not downloaded"})
    assert skipped_datasets(results) == {"cifar10": ["not downloaded"],
                                         "svhn": ["no reason given"]}


def test_accuracy_is_a_plain_table(demo):
    section = parse(demo[3]).find("section", id="metric-accuracy")
    rows = [[td.text() for td in tr.iter("td")]
            for tr in section.find("table", class_="accuracy").find("tbody").iter("tr")]
    # the absent dataset is one line, not a row
    assert [r[:3] for r in rows] == [["digits", "simplecnn", "0.972"], ["shapes", "mlp", "0.884"]]
    skips = [li.text() for li in section.find("ul", class_="skips").iter("li")]
    assert skips == ["cifar10: dataset not available in this run (not on disk or not evaluated); "
                     "reasons in Overview"]
    assert section.find("p", class_="meaning").text() == (
        "The fraction of test images classified correctly; higher is better. (demo)")
    assert not list(section.iter("img"))


def test_summary_matrix_ranks(demo):
    table = parse(demo[3]).find("table", id="summary-matrix")
    headers = [th.text() for th in table.find("thead").iter("th", class_="mhead")]
    assert headers == ["insertion", "roar", "sanity"]  # skipped cifar10 group has no column
    cells = lambda tr: [td for td in tr.iter("td")  # noqa: E731
                        if "agg" not in td.attrs.get("class", "").split()]
    ranks = {tr.attrs["data-method"]: [td.find("b").text() if list(td.iter("b")) else td.text()
                                       for td in cells(tr)[2:]]
             for tr in table.find("tbody").iter("tr")}
    assert ranks["oracle"] == ["1/6", "1/6", "·"]
    assert ranks["grad"] == ["4/6", "6/6", "1/2"]
    assert ranks["random"] == ["6/6", "5/6", "2/2"]
    order = [tr.attrs["data-method"] for tr in table.find("tbody").iter("tr")]
    assert order[0] == "oracle"  # sorted by mean rank
    grad_roar = cells(table.find("tr", **{"data-method": "grad"}))[3]
    assert "c-failed" in grad_roar.attrs["class"] and "c-worse" in grad_roar.attrs["class"]


def test_summary_matrix_shows_the_aggregate_rank_with_its_interval(tmp_path):
    """results.json "ranks" (suite.families.aggregate_ranks): one column per dataset / model,
    "rank [lo, hi]" per method, the interval explained in the lead; none without "ranks"."""
    roar = [case(f"cases/t.py::test_roar[digits-simplecnn-{m}]", m, s)
            for m, s in (("grad", 0.3), ("ig", 0.35), ("random", 0.5))]
    results = results_of(*roar)
    render(results, tmp_path / "plain")
    plain = parse((tmp_path / "plain" / "index.html").read_text())
    assert not list(plain.find("table", id="summary-matrix").iter("td", class_="agg"))
    results["ranks"] = {"digits/simplecnn": {
        "grad": {"rank": 1.0, "mean_rank": 1.0, "ci": [1.0, 2.0], "level": 0.95, "resamples": 1000},
        "ig": {"rank": 2.5, "mean_rank": 2.5, "ci": [2.0, 3.0], "level": 0.95, "resamples": 1000},
        "random": {"rank": 3.0, "mean_rank": 3.0, "ci": [3.0, 3.0], "level": 0.95,
                   "resamples": 1000},
        "broken": {"rank": None, "ci": [1.0, 2.0]}}}
    render(results, tmp_path / "r")
    doc = parse((tmp_path / "r" / "index.html").read_text())
    table = doc.find("table", id="summary-matrix")
    heads = [th for th in table.find("thead").iter("th") if "agg" in th.attrs.get("class", "")]
    assert [th.attrs["data-key"] for th in heads] == ["digits/simplecnn"]
    assert "Aggregate rank" in heads[0].text()
    got = {tr.attrs["data-method"]: [td.text() for td in tr.iter("td", class_="agg")]
           for tr in table.find("tbody").iter("tr")}
    assert got == {"grad": ["1 [1, 2]"], "ig": ["2.5 [2, 3]"], "random": ["3 [3, 3]"]}
    lead = doc.find("section", id="summary").find("p", class_="lead").text()
    assert "95% bootstrap interval" in lead and "redrawn" in lead


def test_text_is_escaped(demo):
    page = demo[3]
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_images_embedded_and_missing_image_noted(demo):
    _, out, _, page = demo
    import io

    from PIL import Image

    pictures = parse(page).find("section", id="pictures")
    figs = list(pictures.iter("figure"))
    assert len(figs) == 2
    data = figs[0].find("img").attrs["src"].split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(data))) as shown, \
            Image.open(out / "assets" / "ig.png") as original:   # lossless: the same pixels
        assert shown.size == original.size
        assert shown.convert("RGB").tobytes() == original.convert("RGB").tobytes()
    assert "missing" in figs[1].attrs["class"]
    assert "Image missing" in figs[1].text() and "assets/missing.png" in figs[1].text()


def test_image_outside_report_dir_is_not_read(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    out = tmp_path / "report"
    c = case("n", "grad", 0.1, images=[{"title": "t", "file": "../secret.png"}])
    page = render(results_of(c), out).read_text()
    assert "outside the report folder" in page and "data:image/png" not in page


def test_cases_without_curves_or_fields_do_not_break(tmp_path):
    odd = [
        {"nodeid": "bare"},
        case("nocurve", "grad", 0.4, curves=None),
        case("badcurve", "intgrad", 0.3, curves=[{"x": [0, 1], "y": [1]}, "junk", {"x": []}]),
        case("nan", "smoothgrad", float("nan")),
        case("nullpoints", "random", 0.5, curves=[{"label": "r", "x": [0, 0.5, 1],
                                                   "y": [1, None, 0], "y_std": [0.1, 0.1]}]),
        case("nomethod", None, 0.2, metric=None),
    ]
    for results in ({"schema": 1, "cases": []}, {}, results_of(*odd)):
        page = render(results, tmp_path).read_text()
        assert page.rstrip().endswith("</html>")
    doc = parse(render(results_of(*odd), tmp_path).read_text())
    rows = ranking(doc, "roar/digits/simplecnn")
    assert [(m, r) for m, r, _ in rows] == [("intgrad", "1"), ("grad", "2"), ("random", "3"),
                                           ("smoothgrad", "")]
    assert len(list(doc.iter("img"))) == 1  # only the null-point curve could be drawn


def test_no_curves_group_says_so(tmp_path):
    page = render(results_of(case("a", "grad", 0.2), case("b", "random", 0.5)), tmp_path)
    assert "No curves recorded for this group." in page.read_text()


def test_render_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ia, ib = render(demo_results(a), a), render(demo_results(b), b)
    assert ia.read_bytes() == ib.read_bytes()
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()


# --- csv ----------------------------------------------------------------------------------------

def test_csv_round_trip(demo):
    results, out, _, _ = demo
    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results["cases"])
    assert list(rows[0]) == ["nodeid", "metric", "dataset", "model", "method", "outcome", "score",
                             "higher_is_better", "baseline_score", "beats_baseline", "duration_s"]
    by_id = {r["nodeid"]: r for r in rows}
    grad = by_id["cases/test_roar.py::test_roar[digits-simplecnn-grad]"]
    assert (grad["metric"], grad["method"], grad["outcome"]) == ("roar", "grad", "failed")
    assert float(grad["score"]) == ROAR["grad"] and float(grad["baseline_score"]) == ROAR["random"]
    assert grad["higher_is_better"] == "false" and grad["beats_baseline"] == "false"
    rnd = by_id["cases/test_insertion.py::test_insertion[digits-simplecnn-random]"]
    assert float(rnd["baseline_score"]) == INSERTION["random"] and rnd["beats_baseline"] == ""
    acc = by_id["cases/test_accuracy.py::test_accuracy[cifar10-resnet8]"]
    assert acc["score"] == "" and acc["method"] == "" and acc["outcome"] == "skipped"
    assert [r["nodeid"] for r in rows] == [c["nodeid"] for c in results["cases"]]
    assert any("<script>" in r["nodeid"] for r in rows)  # CSV keeps the raw text


def test_write_csv_exact_floats(tmp_path):
    results = results_of(case("n,1", "grad", 0.1 + 0.2, duration_s=1 / 3))
    path = write_csv(results, tmp_path / "r.csv")
    row = next(csv.DictReader(path.open(newline="")))
    assert row["nodeid"] == "n,1" and float(row["score"]) == 0.1 + 0.2
    assert float(row["duration_s"]) == 1 / 3


# --- comparison ---------------------------------------------------------------------------------

def test_compare_identical_runs_reports_no_change(tmp_path):
    old = demo_results()
    diff = compare_runs(old, copy.deepcopy(old))
    assert diff["same"] is True and diff["n_common"] == len(old["cases"])
    assert all(diff[k] == [] for k in ("added", "removed", "outcome_changes",
                                       "baseline_changes", "score_changes", "run_changes"))
    page = render(demo_results(), tmp_path, compare=old).read_text()
    assert 'id="no-change"' in page and "No change" in page


def planted():
    old = demo_results()
    new = copy.deepcopy(old)
    by = {c["nodeid"]: c for c in new["cases"]}
    roar = "cases/test_roar.py::test_roar[digits-simplecnn-{}]".format
    by[roar("intgrad")].update(score=0.50, beats_baseline=False, outcome="failed")  # 0.35 -> 0.5
    by[roar("smoothgrad_sq")]["score"] = 0.22 + 0.02  # within 2*sqrt(2)*0.01 = 0.028: noise
    by[roar("sobel")]["score"] = 0.49 - 0.05  # beyond noise, better (lower is better)
    ins = "cases/test_insertion.py::test_insertion[digits-simplecnn-{}]".format
    by[ins("random")]["beats_baseline"] = True  # None -> True: gained
    acc = "cases/test_accuracy.py::test_accuracy[digits-simplecnn]"
    by[acc]["score"] = 0.972 * (1 + 1e-9)  # no score_std: relative tolerance 1e-6 -> noise
    removed = roar("oracle")
    new["cases"] = [c for c in new["cases"] if c["nodeid"] != removed]
    new["cases"].append(case("cases/test_roar.py::test_roar[digits-simplecnn-lrp]", "lrp", 0.3))
    new["run"]["versions"]["torch"] = "2.4.0"
    return old, new


def test_compare_finds_exactly_the_planted_changes():
    old, new = planted()
    diff = compare_runs(old, new)
    roar = "cases/test_roar.py::test_roar[digits-simplecnn-{}]".format
    ins = "cases/test_insertion.py::test_insertion[digits-simplecnn-{}]".format
    assert diff["same"] is False
    assert diff["added"] == [roar("lrp")] and diff["removed"] == [roar("oracle")]
    assert diff["outcome_changes"] == [{"nodeid": roar("intgrad"), "old": "passed",
                                        "new": "failed"}]
    assert diff["baseline_changes"] == [
        {"nodeid": ins("random"), "old": None, "new": True, "change": "gained"},
        {"nodeid": roar("intgrad"), "old": True, "new": False, "change": "lost"}]
    moved = {c["nodeid"]: c for c in diff["score_changes"]}
    assert set(moved) == {roar("intgrad"), roar("sobel")}
    assert moved[roar("intgrad")]["delta"] == pytest.approx(0.15)
    assert moved[roar("intgrad")]["better"] is False and moved[roar("sobel")]["better"] is True
    assert moved[roar("sobel")]["tolerance"] == pytest.approx(2 * (2 * 0.01 ** 2) ** 0.5)
    assert diff["run_changes"] == [{"key": "versions.torch", "old": "2.3.0", "new": "2.4.0"}]


def test_compare_tolerances():
    a = results_of(case("n", "grad", 1.0))
    b = results_of(case("n", "grad", 1.0 + 1e-7))
    assert compare_runs(a, b)["same"]  # relative 1e-6
    b["cases"][0]["score"] = 1.0 + 1e-5
    assert not compare_runs(a, b)["same"]
    a["cases"][0]["details"] = {"score_std": 0.1}  # std on one side only: used for both
    b["cases"][0]["score"] = 1.25
    assert compare_runs(a, b)["same"]  # 0.25 < 2*sqrt(0.02) = 0.283
    b["cases"][0]["score"] = 1.3
    assert compare_runs(a, b)["score_changes"][0]["noise"] == "2·σ"
    b["cases"][0]["score"] = None  # a score that vanished is a change
    assert compare_runs(a, b)["score_changes"][0]["delta"] is None


def test_compare_section_in_page_flags_the_change(tmp_path):
    old, new = planted()
    section = parse(render(new, tmp_path, compare=old).read_text()).find("section",
                                                                         id="comparison")
    assert "No change" not in section.text()
    assert "no longer beats random" in section.find("table", id="cmp-baseline").text()
    score_rows = [[td.text() for td in tr.iter("td")]
                  for tr in section.find("table", id="cmp-score").find("tbody").iter("tr")]
    assert [(r[0].split("-")[-1], r[3], r[5]) for r in score_rows] == [
        ("intgrad]", "+0.15", "worse"), ("sobel]", "-0.05", "better")]
    assert "lrp" in section.find("table", id="cmp-added").text()
    assert "oracle" in section.find("table", id="cmp-removed").text()
    assert "2.4.0" in section.find("table", id="cmp-run").text()


# --- terminal -----------------------------------------------------------------------------------

def test_summary_lines():
    lines = summary_lines(demo_results())
    assert all(len(line) <= 100 for line in lines)
    assert lines[0].startswith("saliencybench: 13 passed, 1 failed, 1 xfailed, 1 xpassed, "
                               "3 skipped")
    assert any(line.startswith("  skipped dataset cifar10:") for line in lines)
    best = {tuple(line.split()[:3]): line.split() for line in lines if "digits/simplecnn" in line}
    assert best[("roar", "↓", "digits/simplecnn")][3:7] == ["oracle", "0.12", "0.52", "+0.4"]
    assert best[("insertion", "↑", "digits/simplecnn")][3:7] == ["oracle", "0.93", "0.41",
                                                                 "+0.52"]
    assert "  FAILED cases/test_roar.py::test_roar[digits-simplecnn-grad]" in lines


def test_summary_lines_empty_and_long_names():
    assert summary_lines({}) == ["saliencybench: 0 passed, 0 failed, 0 xfailed, 0 xpassed, "
                                 "0 skipped  [scale —, —, —]"]
    long = results_of(case("n" * 300, "m" * 80, 0.1, outcome="failed", dataset="d" * 80))
    assert all(len(line) <= 100 for line in summary_lines(long))


def test_many_curves_keep_the_axes_visible():
    """A sanity-check group (8 methods x 5 curves): the legend gets columns and the figure grows,
    so matplotlib never collapses the axes (it warned "axes sizes collapsed to zero" before)."""
    import io
    import warnings

    from PIL import Image

    from suite.report.plots import curves_png

    group = [{"method": f"m{i}", "curves": [{"label": f"c{k}", "x": [0, 1, 2], "y": [1.0, 0.5, k / 5]}
                                            for k in range(5)]} for i in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = curves_png(group, "sanity_cascade", {})
    with Image.open(io.BytesIO(png)) as im:
        w, h = im.size
    assert w > h > 300


def test_calibration_rows_are_listed_but_not_ranked():
    """Sanity-check controls (details.calibration) score the measure, not a method: no rank."""
    group = [{"method": "gradient", "score": 0.1, "nodeid": "a"},
             {"method": "sobel", "score": 1.0, "nodeid": "b", "details": {"calibration": "same map"}},
             {"method": "random", "score": 0.0, "nodeid": "c", "details": {"calibration": "noise"}},
             {"method": "guidedbp", "score": 0.7, "nodeid": "d"}]
    ranked = rank_group(group, higher=False)
    assert [(r, c["method"]) for r, c in ranked] == [(1, "gradient"), (2, "guidedbp"),
                                                     (None, "random"), (None, "sobel")]


def test_a_metric_without_methods_is_a_plain_table(tmp_path):
    """A picture case (sanity_grid) or a user's per-model metric has no method to rank: a plain
    table, no summary-matrix column, no "random ranks first" warning."""
    grid = case("cases/t.py::test_sanity_grid_cascade[digits-simplecnn]", None, None,
                metric="sanity_grid", higher=None)
    roar = [case(f"cases/t.py::test_roar[digits-simplecnn-{m}]", m, s)
            for m, s in (("grad", 0.3), ("random", 0.5))]
    page = (tmp_path / "r").joinpath("index.html")
    render(results_of(grid, *roar), tmp_path / "r")
    doc = parse(page.read_text())
    section = doc.find("section", id="metric-sanity-grid")
    rows = [[td.text() for td in tr.iter("td")]
            for tr in section.find("table", class_="accuracy").find("tbody").iter("tr")]
    assert [r[:2] for r in rows] == [["digits", "simplecnn"]]
    headers = [th.text() for th in doc.find("table", id="summary-matrix").find("thead")
               .iter("th", class_="mhead")]
    assert headers == ["roar"]
    assert not any("sanity_grid" in line for line in summary_lines(results_of(grid, *roar))[1:])


# --- issue 20: small multiples, one style per method, skips folded, reasons in place ------------

def _curve_case(method, metric, score, ys, *, dataset="digits", higher=True, **kw):
    xs = [0.0, 0.5, 1.0]
    curves = [{"label": f"{method} MoRF", "x": xs, "y": ys},
              {"label": "random MoRF", "x": xs, "y": [0.5, 0.5, 0.5]}]
    return case(f"cases/t.py::test_{metric}[{dataset}-simplecnn-{method}]", method, score,
                metric=metric, higher=higher, dataset=dataset, curves=curves, **kw)


def _colors_in(data: bytes) -> set[tuple[int, int, int]]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return {c for _, c in im.convert("RGB").getcolors(1 << 20)}


def _has(colors: set, hex_color: str, tol: int = 6) -> bool:
    rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return any(all(abs(a - b) <= tol for a, b in zip(c, rgb)) for c in colors)


def test_one_colour_per_method_across_figures_and_tables(tmp_path):
    """A method has the same colour in every figure and in the tables' swatches, whatever else
    the figure holds; controls have their fixed neutral styles."""
    from suite.report.plots import PALETTE, ROLE_STYLE, method_styles

    styles = method_styles(["zeta", "alpha", "random", "sobel", "oracle"])
    assert styles["alpha"].color == PALETTE[0] and styles["zeta"].color == PALETTE[1]
    assert (styles["random"].color, styles["random"].linestyle) == ROLE_STYLE["baseline"][:2]
    assert (styles["sobel"].color, styles["sobel"].linestyle) == ("#7f7f7f", ":")
    assert styles["oracle"].role == "oracle" and styles["oracle"].color not in PALETTE
    # a role from results.json overrides the default by id
    assert method_styles(["mine"], {"mine": "baseline"})["mine"].color == "#000000"

    res = results_of(
        _curve_case("alpha", "aopc", 0.9, [1.0, 0.8, 0.9]),
        _curve_case("zeta", "aopc", 0.7, [1.0, 0.6, 0.7]),
        _curve_case("random", "aopc", 0.5, [0.5, 0.5, 0.5]),
        _curve_case("zeta", "road", 0.7, [1.0, 0.6, 0.7], higher=False))
    doc = parse(render(res, tmp_path).read_text())
    imgs = {im.attrs["alt"]: base64.b64decode(im.attrs["src"].split(",", 1)[1])
            for im in doc.iter("img")}
    aopc = _colors_in(imgs["aopc — digits / simplecnn curves"])
    road = _colors_in(imgs["road — digits / simplecnn curves"])
    a, z = styles["alpha"].color, styles["zeta"].color
    assert _has(aopc, a) and _has(aopc, z)
    assert _has(road, z) and not _has(road, a)   # zeta keeps its colour without alpha beside it
    swatches = {(tr.attrs["data-method"], tr.find("i").attrs["data-color"])
                for tr in doc.iter("tr") if "data-method" in tr.attrs and list(tr.iter("i"))}
    assert {("alpha", a), ("zeta", z), ("random", "#000000")} <= swatches
    assert len({c for m, c in swatches if m == "zeta"}) == 1
    legend = doc.find("p", id="legend")
    assert [s.attrs["data-method"] for s in legend.iter("span", class_="lg")] == [
        "alpha", "zeta", "random"]
    assert "baseline (black dashed)" in legend.text()


def test_small_multiples_panels_in_rank_order_against_random():
    from suite.report.plots import group_multiples

    rel = {"L": [0, 1, 2], "relative": [0.0, 0.2, 0.4]}
    ranked = [_curve_case("zeta", "aopc", 0.9, [1.0, 0.9, 0.8], details={"relative_aopc": rel}),
              _curve_case("alpha", "aopc", 0.7, [1.0, 0.7, 0.6]),
              case("r", "random", 0.5, metric="aopc",
                   curves=[{"label": "random MoRF", "x": [0.0, 0.5, 1.0], "y": [0.4, 0.4, 0.4]}])]
    ranked[1]["curves"] = ranked[1]["curves"][:1]   # alpha recorded no random curve of its own
    m = group_multiples(ranked)
    assert [p.method for p in m.panels] == ["zeta", "alpha"]   # random: no panel of its own
    assert m.kinds == ["MoRF"]
    assert m.panels[0].reference[0].y == [0.5, 0.5, 0.5]      # the case's own random curve
    assert m.panels[1].reference[0].y == [0.4, 0.4, 0.4]      # else the random case's
    diff = {name: y for name, _, y in m.diff}
    assert diff["zeta"] == [0.0, 0.2, 0.4]                    # Samek's relative AOPC
    assert diff["alpha"] == pytest.approx([0.6, 0.3, 0.2])    # method - random
    assert "Samek" in m.diff_title


def test_skips_folded_per_section(demo):
    doc = parse(demo[3])
    section = doc.find("section", id="metric-roar")
    lines = [li.text() for li in section.find("ul", class_="skips").iter("li")]
    assert lines == ["cifar10: dataset not available in this run (not on disk or not "
                     "evaluated); reasons in Overview",
                     "1 case skipped: deconvnet needs a ReLU network (digits/simplecnn/deconvnet)"]
    # no table for the absent dataset, no skipped row in the present one
    assert [t.attrs["data-group"] for t in section.iter("table", class_="ranking")] == [
        "roar/digits/simplecnn"]
    assert "deconvnet" not in [m for m, _, _ in ranking(doc, "roar/digits/simplecnn")]
    # the overview keeps the full reasons
    assert "cifar10 not downloaded (run with --sb-download)" in doc.find(
        "table", id="skipped-datasets").text()


def test_failed_reason_in_the_metric_table(demo):
    table = parse(demo[3]).find("table", **{"data-group": "roar/digits/simplecnn"})
    row = table.find("tr", **{"data-method": "grad"})
    why = row.find("td", class_="reason").find("div", class_="why").text()
    assert why.startswith("grad does not beat the random baseline under roar")
    assert "score 0.58 vs random 0.52" in why and "required margin 0.0104" in why
    assert "assert False" not in why


def test_failure_reason_without_a_message_uses_the_verdict_numbers():
    from suite.report.records import failure_reason

    c = case("n", "grad", 0.58, outcome="failed", baseline={"method": "random", "score": 0.52},
             details={"advantage": -0.06, "margin": 0.0104})
    assert failure_reason(c) == ("score 0.58; vs random 0.52; advantage -0.06 <= required "
                                 "margin 0.0104")
    c["details"]["error"] = "RuntimeError: CUDA out of memory\nTraceback ..."
    c["outcome"] = "error"
    assert failure_reason(c) == "RuntimeError: CUDA out of memory Traceback ..."
    assert failure_reason(case("p", "grad", 0.1)) is None


def test_meaning_from_metadata_else_inferred():
    from suite.report.records import meaning_sentence, metric_meta

    res = demo_results()
    roar = metric_meta(res, "roar")
    assert (roar["higher_is_better"], roar["inferred"]) == (False, False)
    assert meaning_sentence(roar) == ("The retrained model's test accuracy, mean over the removed "
                                      "fractions; lower is better.")
    sanity = [c for c in res["cases"] if c["metric"] == "sanity"]
    assert meaning_sentence(metric_meta(res, "sanity", sanity)) == "Lower is better."
    pictures = [case("m", None, None, metric="maps", higher=None)]
    assert meaning_sentence(metric_meta({}, "maps", pictures)).startswith("No direction")
    res["metrics"]["maps"] = {"score": "no score: the maps are a picture", "higher_is_better": None}
    assert meaning_sentence(metric_meta(res, "maps", pictures)) == (
        "No score: the maps are a picture; no direction: these cases are pictures or gates, "
        "not ranked.")


def test_agreement_matrix_drawn_per_dataset_model(demo):
    section = parse(demo[3]).find("section", id="agreement")
    table = section.find("table", class_="agreement", **{"data-key": "digits/simplecnn"})
    cells = [[td.text() for td in tr.iter("td")] for tr in table.find("tbody").iter("tr")]
    assert cells == [["+1.00", "+0.60", "—"], ["+0.60", "+1.00", "-0.20"],
                     ["—", "-0.20", "+1.00"]]
    assert [th.text() for th in table.find("thead").iter("th")] == ["", "insertion", "roar",
                                                                    "sanity"]
    neg = [td for td in table.iter("td") if td.text() == "-0.20"][0]
    assert "rgba(207,34,46" in neg.attrs["style"]            # red for disagreement


def test_pictures_stacked_per_group_and_superseded_plots_left_out(tmp_path):
    from PIL import Image

    (tmp_path / "assets").mkdir()
    for i, color in enumerate(("red", "blue", "green")):
        Image.new("RGB", (60, 40), color).save(tmp_path / "assets" / f"s{i}.png")
    Image.new("RGB", (50, 30), "black").save(tmp_path / "assets" / "plot.png")
    cases = [_curve_case(m, "sanity_noise", s, [1.0, 0.5, s], higher=False,
                         images=[{"title": f"grid {m}", "file": f"assets/s{i}.png"},
                                 {"title": f"similarity per noise step, {m}",
                                  "file": "assets/plot.png"}])
             for i, (m, s) in enumerate((("b", 0.3), ("a", 0.1), ("c", 0.2)))]
    page = render(results_of(*cases), tmp_path).read_text()
    section = parse(page).find("section", id="pictures")
    figs = list(section.iter("figure"))
    assert len(figs) == 1 and "stack" in figs[0].attrs["class"]
    assert "in the table's order: a, c, b" in figs[0].text()   # lower is better: a first
    assert "3 per-case similarity plot(s) are not embedded" in section.text()
    import io
    with Image.open(io.BytesIO(base64.b64decode(
            figs[0].find("img").attrs["src"].split(",", 1)[1]))) as im:
        assert im.size == (180, 40)                           # three columns of 60 x 40
        rgb = im.convert("RGB")
        assert [rgb.getpixel((30 + 60 * k, 20)) for k in range(3)] == [
            (0, 0, 255), (0, 128, 0), (255, 0, 0)]            # a (blue), c (green), b (red)
