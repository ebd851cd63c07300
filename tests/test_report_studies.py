"""The report's Studies section (suite.report.studies) on hand-made records."""
from __future__ import annotations

from suite.report import render
from suite.report import studies as St


def _case(metric, method, details, dataset="digits", model="simplecnn", score=0.5):
    return {"nodeid": f"cases/test_{metric}.py::test_{metric}[{dataset}-{model}-{method}]",
            "metric": metric, "dataset": dataset, "model": model, "method": method,
            "outcome": "passed", "score": score, "higher_is_better": True, "details": details}


def _results():
    rel = lambda ys: {"L": list(range(len(ys))), "relative": ys}  # noqa: E731
    acc = {"x": [0.0, 0.5, 1.0], "y": {"gradient": [1.0, 0.6, 0.2], "random": [1.0, 0.9, 0.8]}}
    cases = [
        _case("aopc", "random", {"relative_aopc": rel([0.0, 0.0, 0.0])}),
        _case("aopc", "gradient", {"relative_aopc": rel([0.0, 0.3, 0.5])}),
        _case("aopc", "sobel", {"relative_aopc": {"L": [0, 1], "relative": [0.0]}}),  # unusable
        _case("selectivity", "gradient", {"accuracy_curve": acc}),
        _case("accuracy", None, {"n_params": 1234, "per_class_accuracy": {"0": 0.9, "1": 0.8}},
              score=0.85),
        _case("accuracy", None, {"n_params": 99, "per_class_accuracy": {"circle": 1.0}},
              dataset="shapes", model="warn", score=1.0),
        _case("accuracy", None, {}, model="mlp"),                                   # no row
    ]
    return {"schema": 1, "run": {"scale": "smoke"}, "cases": cases}


def test_series_and_rows_read_what_the_cases_recorded():
    res = _results()
    aopc = [c for c in res["cases"] if c["metric"] == "aopc"]
    series = St.relative_aopc_series(aopc)
    assert [(m, y) for m, _, y in series] == [("random", [0.0, 0.0, 0.0]), ("gradient", [0.0, 0.3, 0.5])]
    sel = St.selectivity_accuracy_series([c for c in res["cases"] if c["metric"] == "selectivity"])
    assert [m for m, _, _ in sel] == ["gradient", "random"] and sel[0][2] == [1.0, 0.6, 0.2]
    rows = St.model_rows(res)
    assert [(r["dataset"], r["model"], r["n_params"]) for r in rows] == [
        ("digits", "simplecnn", 1234), ("shapes", "warn", 99)]


def test_section_draws_the_figures_and_one_model_table_per_dataset(tmp_path):
    html = St.section(_results())
    assert html.startswith('<section id="studies">')
    # selectivity accuracy; the relative AOPC (Fig. 4) is the aopc section's first panel
    assert html.count("<img ") == 1
    assert "Fig. 4" not in html and "selectivity: accuracy" in html
    assert 'id="models-digits"' in html and 'id="models-shapes"' in html
    assert "1,234" in html and "<th>circle</th>" in html and "0.800" in html
    assert St.section({"schema": 1, "run": {}, "cases": []}) == ""
    page = render(_results(), tmp_path).read_text()
    assert '<section id="studies">' in page and 'href="#studies"' in page
