"""Matplotlib figures for the report, built on ``matplotlib.figure.Figure`` (Agg, no pyplot).

One figure per (metric, dataset, model) group: every method's curve, the random baseline black and
dashed, a shaded band of +-y_std where given. Output is PNG bytes with no timestamp or software
metadata, so identical input gives identical bytes.
"""
from __future__ import annotations

import io
import math
from typing import Any, Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .records import BASELINE_METHOD, Case, method_label

# Colour-blind friendly cycle (Okabe-Ito, black left out: black is the baseline's colour).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
           "#7F3C8D", "#11A579", "#3969AC", "#E73F74", "#80BA5A")
CONTROL_METHODS = ("sobel", "oracle")  # non-attribution controls: drawn dotted
DPI = 100


def png_bytes(fig: Figure, **savefig_kw: Any) -> bytes:
    """The figure as a 256-colour palette PNG (no timestamp or software metadata).

    Plots and colour-mapped maps use few distinct colours: the palette (median cut, no dithering,
    deterministic) keeps them visually unchanged at about a third of the bytes of a 24-bit PNG
    (measured on the report's sanity grids and curves), which the self-contained page embeds.
    """
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, **savefig_kw)
    buf.seek(0)
    with Image.open(buf) as im:
        rgb = im.convert("RGB")
    pal = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    pal.save(out, format="PNG", optimize=True)
    return out.getvalue()


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """A fixed colour per method (sorted order), so a method looks the same in every plot."""
    names = sorted({m for m in methods if m != BASELINE_METHOD})
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(names)}
    colors[BASELINE_METHOD] = "#000000"
    return colors


def _floats(values: Any) -> list[float]:
    out = []
    for v in values if isinstance(values, (list, tuple)) else []:
        try:
            out.append(float(v) if v is not None else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def usable_curves(case: Case) -> list[dict]:
    """The case's curves that have at least one point and matching x/y lengths."""
    curves = case.get("curves")
    out = []
    for c in curves if isinstance(curves, list) else []:
        if not isinstance(c, dict):
            continue
        x, y = _floats(c.get("x")), _floats(c.get("y"))
        if x and len(x) == len(y):
            out.append(c)
    return out


def curves_png(group: list[Case], title: str, colors: dict[str, str],
               direction: str = "") -> bytes | None:
    """PNG of all curves of a group's cases, or ``None`` when no case has a usable curve.

    Curves are drawn and listed in the legend in the order of ``group`` (pass it best first), the
    random baseline last.
    """
    curves = [(case, c) for case in group for c in usable_curves(case)]
    if not curves:
        return None
    # the legend sits right of the axes: give it columns (and the figure height) to fit, so the
    # axes keep their size when a group has many curves (sanity checks: ~5 per method)
    ncol = 1 if len(curves) <= 16 else (2 if len(curves) <= 40 else 3)
    rows = -(-len(curves) // ncol)
    fig = Figure(figsize=(7.2 + 2.4 * (ncol - 1), max(3.8, 0.19 * rows + 0.9)), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n_per_case = {id(case): len(usable_curves(case)) for case, _ in curves}
    # Baseline last so it is drawn on top and listed last in the legend.
    curves.sort(key=lambda cc: cc[0].get("method") == BASELINE_METHOD)  # stable
    for case, curve in curves:
        method = method_label(case)
        label = method if case.get("method") is not None else str(curve.get("label") or method)
        if n_per_case[id(case)] > 1 and curve.get("label"):
            label = f"{method}: {curve['label']}"
        x, y = _floats(curve["x"]), _floats(curve["y"])
        is_base = case.get("method") == BASELINE_METHOD
        color = colors.get(method, "#666666")
        style = dict(color=color, linewidth=2.2 if is_base else 1.6,
                     linestyle="--" if is_base else (":" if method in CONTROL_METHODS else "-"),
                     marker=None if len(x) > 25 else "o", markersize=3, zorder=3 if is_base else 2)
        if is_base:
            label += " (baseline)"
        ax.plot(x, y, label=label, **style)
        std = _floats(curve.get("y_std"))
        if len(std) == len(y):
            lo = [a - abs(s) for a, s in zip(y, std)]
            hi = [a + abs(s) for a, s in zip(y, std)]
            ax.fill_between(x, lo, hi, color=color, alpha=0.12 if is_base else 0.18, linewidth=0)
    first = curves[0][1]
    ax.set_xlabel(str(first.get("x_label") or "x"))
    ax.set_ylabel(str(first.get("y_label") or "y"))
    ax.set_title(title + (f"  ({direction})" if direction else ""), fontsize=11)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5, frameon=False,
              ncol=ncol)
    return png_bytes(fig)
