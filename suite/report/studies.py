"""The studies' own pictures and tables, drawn from the cases' recorded details (pure functions of
the results dict, like the rest of the report):

* Samek et al. 2017, Fig. 4 (AOPC_method(L) - AOPC_random(L), ``details.relative_aopc``): the
  series is read here (``relative_aopc_series``) and drawn as the first panel of the aopc
  section's small multiples, so it is not drawn twice;
* selectivity (Montavon et al. 2018): the accuracy of the perturbed images beside the class score
  (``details.accuracy_curve``), one curve per method;
* the model table: parameter count and per-class test accuracy of every trained model (the
  accuracy cases' ``details.n_params`` / ``details.per_class_accuracy``).

``section(results, colors)`` is the page's "Studies" section ("" when there is nothing to show);
``colors`` is the page's method -> colour map, so a method has one colour in the whole report.
"""
from __future__ import annotations

import base64
import html
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .plots import DPI, figure_image, method_colors
from .records import Case, cases_of, details, group_cases, method_label


def _floats(values: Any) -> list[float] | None:
    if not isinstance(values, list) or not values:
        return None
    try:
        return [float("nan") if v is None else float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _curves_png(series: list[tuple[str, list[float], list[float]]], title: str, x_label: str,
                y_label: str, zero_line: bool = False,
                colors: dict[str, str] | None = None) -> tuple[str, bytes] | None:
    if not series:
        return None
    colors = {**method_colors(name for name, _, _ in series), **(colors or {})}
    fig = Figure(figsize=(7.2, 3.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, x, y in series:
        ax.plot(x, y, label=name, color=colors.get(name, "#666666"), lw=1.6,
                ls="--" if name == "random" else "-", marker=None if len(x) > 25 else "o", ms=3)
    if zero_line:
        ax.axhline(0.0, color="#888888", lw=0.8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=11)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5, frameon=False)
    return figure_image(fig)


def relative_aopc_series(group: list[Case]) -> list[tuple[str, list[float], list[float]]]:
    """(method, L, AOPC(L) - AOPC_random(L)) of each aopc case of one (dataset, model)."""
    out = []
    for c in group:
        rel = details(c).get("relative_aopc")
        if not isinstance(rel, dict):
            continue
        x, y = _floats(rel.get("L")), _floats(rel.get("relative"))
        if x and y and len(x) == len(y):
            out.append((method_label(c), x, y))
    return out


def selectivity_accuracy_series(group: list[Case]) -> list[tuple[str, list[float], list[float]]]:
    """(method, fraction removed, accuracy) of each selectivity case of one (dataset, model), and
    random's once (from the first case that holds it)."""
    out, seen = [], set()
    for c in group:
        acc = details(c).get("accuracy_curve")
        if not isinstance(acc, dict):
            continue
        x = _floats(acc.get("x"))
        for who, ys in (acc.get("y") or {}).items():
            y = _floats(ys)
            if who not in seen and x and y and len(x) == len(y):
                seen.add(who)
                out.append((str(who), x, y))
    return out


def model_rows(results: dict) -> list[dict[str, Any]]:
    """One row per accuracy case with a parameter count: dataset, model, params, test accuracy,
    per-class accuracies."""
    rows = []
    for c in cases_of(results):
        if c.get("metric") != "accuracy":
            continue
        d = details(c)
        if d.get("n_params") is None:
            continue
        rows.append({"dataset": c.get("dataset"), "model": c.get("model"), "n_params": d["n_params"],
                     "test_acc": c.get("score"), "per_class": d.get("per_class_accuracy") or {}})
    return rows


def _img(image: tuple[str, bytes], alt: str) -> str:
    mime, data = image
    uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return f'<figure><img src="{uri}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}' \
           '</figcaption></figure>'


def _fmt(v: Any) -> str:
    try:
        return f"{float(v):.3f}"
    except (TypeError, ValueError):
        return "—"


def model_table(rows: list[dict[str, Any]]) -> str:
    """One table per dataset (its classes as columns): parameters, test accuracy, per class."""
    if not rows:
        return ""
    parts = ['<h3>Models</h3><p class="meta">parameters and test accuracy, overall and per class '
             '(the studies\' model table)</p>']
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == ds]
        classes = list(dict.fromkeys(k for r in mine for k in r["per_class"]))
        head = "".join(f"<th>{html.escape(str(k))}</th>" for k in classes)
        body = "".join(
            f'<tr><td>{html.escape(str(r["model"]))}</td>'
            f'<td class="num">{int(r["n_params"]):,}</td><td class="num">{_fmt(r["test_acc"])}</td>'
            + "".join(f'<td class="num">{_fmt(r["per_class"].get(k))}</td>' for k in classes)
            + "</tr>" for r in mine)
        parts.append(f'<table class="plain model-table" id="models-{html.escape(str(ds))}"><caption>'
                     f'{html.escape(str(ds))}</caption><thead><tr><th>Model</th><th>Parameters</th>'
                     f'<th>Test accuracy</th>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "".join(parts)


def section(results: dict, colors: dict[str, str] | None = None) -> str:
    """The "Studies" section of the page, or "" when no case recorded what it draws."""
    parts = []
    groups = group_cases(results)
    for (ds, mo), group in (groups.get("selectivity") or {}).items():
        png = _curves_png(selectivity_accuracy_series(group), f"selectivity: accuracy, {ds} / {mo}",
                          "fraction of patches removed", "accuracy (originally predicted class)",
                          colors=colors)
        if png:
            parts.append(_img(png, f"selectivity: accuracy as patches are removed, {ds} / {mo}"))
    table = model_table(model_rows(results))
    if not parts and not table:
        return ""
    return ('<section id="studies"><h2>Studies</h2>' + table
            + (f'<div class="pics">{"".join(parts)}</div>' if parts else "") + "</section>")


__all__ = ["model_rows", "model_table", "relative_aopc_series", "section",
           "selectivity_accuracy_series"]
