"""A hand-made results dict exercising every part of the report (used by the tests).

``python -m suite.report.demo OUT_DIR`` renders it, to preview the page without running the suite.
It holds: accuracy rows, a lower-is-better metric (roar) and a higher-is-better one (insertion)
with spread bands, a failed case with its assertion message, an xfailed and an xpassed case, a
skipped dataset (in two metrics) and a case skipped for another reason, a case with no curve, an
image that exists and one that is missing, a nodeid with ``<script>`` in it, metric and method
metadata (sanity left without, to show the fallback), paired intervals on insertion and a
metric-agreement matrix.
"""
from __future__ import annotations

import io
import math
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

XS = [i / 10 for i in range(11)]
ROAR = {"grad": 0.58, "intgrad": 0.35, "smoothgrad_sq": 0.22, "random": 0.52, "sobel": 0.49,
        "oracle": 0.12}
INSERTION = {"grad": 0.61, "intgrad": 0.72, "smoothgrad_sq": 0.66, "random": 0.41, "sobel": 0.44,
             "oracle": 0.93}
ROLES = {"random": "baseline", "sobel": "control", "oracle": "oracle"}
METRICS = {
    "accuracy": {"description": "test accuracy of the trained model", "higher_is_better": True,
                 "score": "the fraction of test images classified correctly", "source": "demo"},
    "roar": {"description": "RemOve And Retrain", "higher_is_better": False,
             "score": "the retrained model's test accuracy, mean over the removed fractions",
             "source": "Hooker et al. 2019"},
    "insertion": {"description": "insertion", "higher_is_better": True,
                  "score": "the area under the class probability as pixels are inserted",
                  "source": "Petsiuk et al. 2018"},
}
HOOKER = "Hooker et al. 2019, A Benchmark for Interpretability Methods in Deep Neural Networks"


def _curve(score: float, higher: bool, label: str, std: float | None) -> dict:
    # A smooth monotone curve whose mean is roughly the score (AUC-like).
    k = 4 * (1 - score) if higher else 4 * score
    y = [math.exp(-k * x) if not higher else 1 - math.exp(-(4 - k) * x) for x in XS]
    return {"label": label, "x": XS, "y": [round(v, 4) for v in y],
            "y_std": None if std is None else [round(std * (0.5 + x), 4) for x in XS],
            "x_label": "fraction of pixels " + ("inserted" if higher else "removed"),
            "y_label": "accuracy"}


def _metric_cases(metric: str, scores: dict[str, float], higher: bool) -> list[dict]:
    cases = []
    base = scores["random"]
    for method, score in scores.items():
        beats = None if method == "random" else (score > base if higher else score < base)
        case = {"nodeid": f"cases/test_{metric}.py::test_{metric}[digits-simplecnn-{method}]",
                "metric": metric, "dataset": "digits", "model": "simplecnn", "method": method,
                "outcome": "passed" if beats in (None, True) else "failed",
                "duration_s": round(2.0 + len(method) / 10, 2), "score": score,
                "higher_is_better": higher,
                "baseline": None if method == "random" else {"method": "random", "score": base},
                "beats_baseline": beats,
                "curves": [_curve(score, higher, method, 0.03 if method != "sobel" else None)],
                "details": {"score_std": 0.01, "from_cache": method == "oracle"}}
        cases.append(case)
    return cases


def demo_results(out_dir: Path | None = None) -> dict:
    """The demo results; with ``out_dir`` also writes the one existing image it refers to."""
    cases = [
        {"nodeid": "cases/test_accuracy.py::test_accuracy[digits-simplecnn]", "metric": "accuracy",
         "dataset": "digits", "model": "simplecnn", "method": None, "outcome": "passed",
         "duration_s": 3.4, "score": 0.972, "higher_is_better": True, "baseline": None,
         "beats_baseline": None, "curves": [], "details": {}},
        {"nodeid": "cases/test_accuracy.py::test_accuracy[shapes-mlp]", "metric": "accuracy",
         "dataset": "shapes", "model": "mlp", "method": None, "outcome": "passed",
         "duration_s": 1.1, "score": 0.884, "higher_is_better": True, "baseline": None,
         "beats_baseline": None, "curves": [], "details": {}},
        {"nodeid": "cases/test_accuracy.py::test_accuracy[cifar10-resnet8]", "metric": "accuracy",
         "dataset": "cifar10", "model": "resnet8", "method": None, "outcome": "skipped",
         "duration_s": 0.0, "score": None, "higher_is_better": True, "baseline": None,
         "beats_baseline": None, "curves": [],
         "details": {"reason": "cifar10 not downloaded (run with --sb-download)"}},
    ]
    roar = _metric_cases("roar", ROAR, higher=False)
    for case in roar:
        if case["method"] == "grad":  # failed, but the literature expects it to
            case["details"]["expectation"] = {"expected": "fail", "source": HOOKER}
        if case["method"] == "intgrad":
            case["images"] = [{"title": "Integrated gradients, 4 digits", "file": "assets/ig.png"},
                              {"title": "Lost picture", "file": "assets/missing.png"}]
    cases += roar
    roar[0]["details"]["error"] = (
        "AssertionError: grad does not beat the random baseline under roar on digits/simplecnn: "
        "score 0.58 vs random 0.52 (lower is better; advantage -0.06 <= required margin 0.0104)"
        "\nassert False\n +  where False = Verdict(score=0.58).beats")
    cases.append({"nodeid": "cases/test_roar.py::test_roar[digits-simplecnn-deconvnet]",
                  "metric": "roar", "dataset": "digits", "model": "simplecnn", "method": "deconvnet",
                  "outcome": "skipped", "duration_s": 0.0, "score": None,
                  "higher_is_better": False, "baseline": None, "beats_baseline": None,
                  "curves": [], "details": {"reason": "deconvnet needs a ReLU network"}})
    insertion = _metric_cases("insertion", INSERTION, higher=True)
    for case in insertion:
        if case["method"] != "random":
            d = round(case["score"] - INSERTION["random"], 4)
            case["details"]["paired"] = {"mean_diff": d, "ci": [round(d - 0.05, 4),
                                                                round(d + 0.05, 4)],
                                         "level": 0.95, "p_value": 0.001, "p_holm": 0.004,
                                         "n": 64, "unit": "images", "method": "bootstrap"}
    insertion[0]["outcome"] = "xfailed"
    insertion[0]["beats_baseline"] = True
    insertion[0]["details"].update(reason="gradient saturation",
                                   expectation={"expected": "fail", "source": HOOKER})
    insertion[4]["outcome"] = "xpassed"
    insertion[4]["details"]["expectation"] = {"expected": "fail", "source": "Adebayo et al. 2018"}
    cases += insertion
    cases.append({"nodeid": 'cases/test_sanity.py::test_sanity[digits-simplecnn-grad-<script>'
                            'alert("x")</script>]', "metric": "sanity", "dataset": "digits",
                  "model": "simplecnn", "method": "grad", "outcome": "passed", "duration_s": 0.7,
                  "score": 0.21, "higher_is_better": False, "baseline": None,
                  "beats_baseline": None, "curves": [], "details": {}})
    cases.append({"nodeid": "cases/test_sanity.py::test_sanity[digits-simplecnn-random]",
                  "metric": "sanity", "dataset": "digits", "model": "simplecnn",
                  "method": "random", "outcome": "passed", "duration_s": 0.2, "score": 0.95,
                  "higher_is_better": False, "baseline": None, "beats_baseline": None,
                  "details": {}})
    cases.append({"nodeid": "cases/test_roar.py::test_roar[cifar10-resnet8-grad]",
                  "metric": "roar", "dataset": "cifar10", "model": "resnet8", "method": "grad",
                  "outcome": "skipped", "duration_s": 0.0, "score": None,
                  "higher_is_better": False, "baseline": None, "beats_baseline": None,
                  "curves": [], "details": {"reason": "cifar10 not downloaded"}})
    if out_dir is not None:
        (Path(out_dir) / "assets").mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "assets" / "ig.png").write_bytes(_heatmaps_png())
    return {
        "schema": 1,
        "run": {"started": "2024-05-01T10:00:00+00:00", "finished": "2024-05-01T10:03:25+00:00",
                "scale": "small", "device": "cpu", "seeds": [0, 1],
                "versions": {"python": "3.11.2", "torch": "2.3.0", "torchvision": "0.18.0",
                             "captum": "0.7.0", "numba": "0.59.1"},
                "git": "0123456789abcdef0123456789abcdef01234567",
                "skipped_datasets": {"cifar10": "cifar10 not downloaded (run with --sb-download)"}},
        "cases": cases,
        "metrics": METRICS,
        "methods": {m: {"description": f"{m} (demo)", "role": ROLES.get(m, "method"),
                        "source": "demo"} for m in ROAR},
        "agreement": {"digits/simplecnn": {"metrics": ["insertion", "roar", "sanity"],
                                           "tau": [[1.0, 0.6, None], [0.6, 1.0, -0.2],
                                                   [None, -0.2, 1.0]]}},
        # each method's aggregate rank with its bootstrap interval (suite.families)
        "ranks": {"digits/simplecnn": {
            m: {"rank": float(i + 1), "mean_rank": float(i + 1),
                "ci": [float(max(1, i)), float(min(6, i + 2))], "level": 0.95, "resamples": 1000}
            for i, m in enumerate(("oracle", "intgrad", "smoothgrad_sq", "sobel", "random",
                                   "grad"))}},
    }


def _heatmaps_png() -> bytes:
    fig = Figure(figsize=(4, 1.2), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    for i in range(4):
        ax = fig.add_subplot(1, 4, i + 1)
        grid = [[math.sin((r + i) / 2) * math.cos((c - i) / 3) for c in range(8)]
                for r in range(8)]
        ax.imshow(grid, cmap="inferno")
        ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


if __name__ == "__main__":  # pragma: no cover
    from . import render

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/demo")
    print(render(demo_results(target), target))
