"""Matplotlib figures for the report, built on ``matplotlib.figure.Figure`` (Agg, no pyplot).

Curve metrics are drawn as small multiples: per (metric, dataset, model) one small panel per
method (in the table's rank order) with the method's curve against the random baseline's, bands of
+-y_std where recorded, and one overview panel of the method-minus-random difference (for AOPC
Samek et al.'s relative curve, ``details.relative_aopc``). Every method has one style in the
whole report (``method_styles``): attribution methods a colour of a fixed palette by method id,
the random baseline black dashed, sobel (a control) grey dotted, the oracle dark gold dash-dot.

Output is image bytes with no timestamp or software metadata, so identical input gives identical
bytes.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .records import BASELINE_METHOD, DEFAULT_ROLES, Case, details, method_label

# 20 distinguishable colours on white (Okabe-Ito first, then Tableau/ColorBrewer picks), no black
# or grey (the controls' colours) and no dark gold (the oracle's).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#7F3C8D",
           "#E73F74", "#80BA5A", "#17BECF", "#9E0142", "#3969AC", "#F781BF", "#006D2C",
           "#FDB863", "#4B0092", "#BCBD22", "#A6761D", "#1F3A93", "#FF6F61")
ROLE_STYLE = {  # role -> (colour, matplotlib line style, CSS border style of the swatch)
    "baseline": ("#000000", "--", "dashed"),
    "control": ("#7f7f7f", ":", "dotted"),
    "oracle": ("#8B6914", "-.", "double"),
}
DPI = 100
MARKERS_UP_TO = 0   # points per curve up to which the points are marked
SECONDARY_DASHES = ((0, (4, 1.5)), (0, (1, 1.2)), (0, (3, 1, 1, 1)), (0, (6, 2)), (0, (2, 2)))


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: Any
    css: str            # CSS border style of the table swatch: solid / dashed / dotted / double
    role: str

    @property
    def is_method(self) -> bool:
        return self.role == "method"


def method_styles(methods: Iterable[str], roles: dict[str, str] | None = None) -> dict[str, Style]:
    """One style per method id for the whole report: attribution methods (role ``method``) take
    the palette's colours in sorted id order; baseline, control and oracle have fixed styles."""
    roles = roles or {}
    names = sorted({str(m) for m in methods})
    role_of = {m: roles.get(m) or DEFAULT_ROLES.get(m, "method") for m in names}
    out: dict[str, Style] = {}
    plain = [m for m in names if role_of[m] not in ROLE_STYLE]
    for i, m in enumerate(plain):
        out[m] = Style(PALETTE[i % len(PALETTE)], "-", "solid", "method")
    for m in names:
        if role_of[m] in ROLE_STYLE:
            color, ls, css = ROLE_STYLE[role_of[m]]
            out[m] = Style(color, ls, css, role_of[m])
    return out


def method_colors(methods: Iterable[str], roles: dict[str, str] | None = None) -> dict[str, str]:
    """The colour of each method (see ``method_styles``)."""
    return {m: s.color for m, s in method_styles(methods, roles).items()}


def _style(styles: dict[str, Style], method: str) -> Style:
    return styles.get(method) or Style("#666666", "-", "solid", "method")


class _RGBASink:
    """A file object for ``savefig(format="rgba")``: keeps the buffer with its shape (Agg hands
    ``write`` a (h, w, 4) memoryview)."""

    def __init__(self) -> None:
        self.array = None

    def write(self, data: Any) -> int:
        import numpy as np

        self.array = np.array(data, dtype=np.uint8, copy=True)
        return self.array.nbytes

    def seek(self, *args: Any) -> int:   # matplotlib takes an object with ``seek`` for a file
        return 0


def figure_rgb(fig: Figure, **savefig_kw: Any) -> Any:
    """The figure drawn once by Agg as a PIL RGB image (``savefig_kw``: dpi, bbox_inches, ...).

    Takes Agg's RGBA buffer instead of a PNG round trip (encode, then decode): the 24-bit PNG
    encode was half of the cost of saving a maps mosaic (0.6 of 1.0 s for 3856 x 602 px).
    """
    from PIL import Image

    sink = _RGBASink()
    fig.savefig(sink, format="rgba", **savefig_kw)
    arr = sink.array
    if arr is None or arr.ndim != 3 or arr.shape[2] != 4:   # an Agg without the shape: PNG
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None},
                    pil_kwargs={"compress_level": 0}, **savefig_kw)
        buf.seek(0)
        with Image.open(buf) as im:
            return im.convert("RGB")
    return Image.fromarray(arr, "RGBA").convert("RGB")


def is_raster(fig: Figure) -> bool:
    """Whether the figure shows raster images (an ``imshow``: inputs, maps, mosaics) rather than
    only vector marks (lines, bars, text)."""
    return any(ax.get_images() for ax in fig.axes)


def png_bytes(fig: Figure, **savefig_kw: Any) -> bytes:
    """The figure as a 256-colour palette PNG (no timestamp or software metadata).

    Plots and colour-mapped maps use few distinct colours: the palette (median cut, no dithering,
    deterministic) keeps them visually unchanged at about a third of the bytes of a 24-bit PNG.
    zlib level 1: these are the report's asset files, which the page decodes and re-encodes
    (WebP); ``optimize`` took 5x the time for 12% fewer bytes on a maps mosaic.
    """
    from PIL import Image

    pal = figure_rgb(fig, **savefig_kw).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.NONE)
    out = io.BytesIO()
    pal.save(out, format="PNG", compress_level=1)
    return out.getvalue()


#: WebP quality of the lossy encoding tried for raster pictures (inputs, perturbed inputs, maps;
#: never plots), libwebp's default: see ``compact_image``. The pictures are for looking at; the
#: numbers are in results.json.
RASTER_QUALITY = 75
#: WebP lossless effort: method 4 at quality 100; quality 60 took 40% of the time for 3.5% more
#: bytes on the default bench page's lossless images, method 6 another 1.3% fewer bytes for 50x
#: the time (measured on all of them).
WEBP_LOSSLESS = dict(lossless=True, quality=100, method=4)


def compact_image(image: Any, colors: int = 256, lossy: int | None = None) -> tuple[str, bytes]:
    """A PIL image as WebP: ``(mime, bytes)``; deterministic (same image, same bytes).

    Lossless WebP of the palette image (``colors`` colours, median cut, no dither; a palette image
    with 256 colours is kept as it is) was smaller than palette PNG on every one of the default
    bench page's 78 images, so PNG is no longer encoded beside it.

    ``lossy``: a WebP quality; the image (a raster picture: never pass it for a plot, whose lines
    and text lossy coding blurs) is also encoded lossy, from its RGB pixels, and the smaller of
    the two kept. Lossy wins on the perturbed-input pictures (smooth photographic inputs: ROAD's
    693 x 191 picture 25 kB lossless, 14 kB at quality 75) and loses on the noise-like maps
    mosaics (228 kB lossless, 259 kB at 75), so each keeps its better coding. A smaller palette
    was tried instead and rejected: median cut to 64 colours turned the signed maps' red and blue
    grey (the mosaics mix several colour maps and photographs).
    """
    from PIL import Image

    if image.mode in ("RGBA", "LA") or "transparency" in image.info:   # onto the page's white
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, "white")
        image.paste(rgba, mask=rgba.getchannel("A"))
    if image.mode == "P" and colors >= 256:
        pal = image
    else:
        pal = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)
    webp = io.BytesIO()
    pal.save(webp, format="WEBP", **WEBP_LOSSLESS)
    if lossy is not None:
        small = io.BytesIO()
        image.convert("RGB").save(small, format="WEBP", quality=lossy, method=4)
        if len(small.getvalue()) < len(webp.getvalue()):
            return "image/webp", small.getvalue()
    return "image/webp", webp.getvalue()


def figure_image(fig: Figure, colors: int = 64) -> tuple[str, bytes]:
    """A figure as ``(mime, bytes)``: see ``compact_image``."""
    return compact_image(figure_rgb(fig), colors)


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


# --- small multiples ------------------------------------------------------------------------------

@dataclass
class Line:
    kind: str                  # what the curve measures ("MoRF", "spearman_abs", ""): its label
    x: list[float]
    y: list[float]
    std: list[float] | None


def split_label(label: str, method: str) -> tuple[str, str]:
    """``(who, kind)`` of a curve label: ``"gradient MoRF"`` -> ("gradient", "MoRF"), ``"random
    LERF"`` -> ("random", "LERF"); a label naming no one (a sanity measure) is the case's own."""
    label = str(label or "").strip()
    for who in dict.fromkeys([method, BASELINE_METHOD]):
        if label == who:
            return who, ""
        if label.startswith(who + " "):
            return who, label[len(who) + 1:].strip()
    return method, label


def _line(c: dict, kind: str) -> Line:
    y = _floats(c["y"])
    std = _floats(c.get("y_std"))
    return Line(kind, _floats(c["x"]), y, std if len(std) == len(y) else None)


def case_lines(case: Case) -> tuple[list[Line], list[Line]]:
    """The case's own curves and the random baseline's curves it recorded beside them."""
    method = method_label(case)
    own, rnd = [], []
    for c in usable_curves(case):
        who, kind = split_label(c.get("label"), method)
        (rnd if who == BASELINE_METHOD and method != BASELINE_METHOD else own).append(_line(c, kind))
    return own, rnd


@dataclass
class Panel:
    method: str
    lines: list[Line]           # the method's, first = the primary one (what the score reads)
    reference: list[Line]       # the random baseline's, same kinds


@dataclass
class Multiples:
    panels: list[Panel]
    diff: list[tuple[str, list[float], list[float]]]   # (method, x, method - random)
    diff_title: str
    kinds: list[str]
    x_label: str
    y_label: str
    x_ticks: list[str] | None = None
    threshold: float | None = None


def group_multiples(ranked: list[Case]) -> Multiples | None:
    """The data of a group's small multiples, panels in the order of ``ranked`` (best first).

    The random case gives no panel of its own: its curves are every panel's reference where a
    case did not record random's beside its own (the sanity checks' calibration random).
    """
    base_case = next((c for c in ranked if c.get("method") == BASELINE_METHOD), None)
    base_lines = case_lines(base_case)[0] if base_case is not None else []
    panels, first = [], None
    for case in ranked:
        if case.get("method") == BASELINE_METHOD:
            continue
        own, rnd = case_lines(case)
        if not own:
            continue
        first = first or next(c for c in usable_curves(case))
        kinds = [ln.kind for ln in own]
        ref = rnd or [ln for ln in base_lines if ln.kind in kinds]
        panels.append(Panel(method_label(case), own, ref))
    if not panels:
        if base_lines:   # only the baseline recorded curves: draw it alone
            first = usable_curves(base_case)[0]
            panels.append(Panel(BASELINE_METHOD, base_lines, []))
        else:
            return None
    kinds = list(dict.fromkeys(ln.kind for p in panels for ln in p.lines))
    diff, diff_title = [], ""
    primary = kinds[0]
    rel_cases = {method_label(c): details(c).get("relative_aopc") for c in ranked
                 if isinstance(details(c).get("relative_aopc"), dict)}
    for p in panels:
        rel = rel_cases.get(p.method)
        if rel is not None:
            x, y = _floats(rel.get("L")), _floats(rel.get("relative"))
            if x and len(x) == len(y):
                diff.append((p.method, x, y))
                diff_title = "AOPC − AOPC_random (Samek Fig. 4)"
                continue
        mine = next((ln for ln in p.lines if ln.kind == primary), None)
        ref = next((ln for ln in p.reference if ln.kind == primary), None)
        if mine is not None and ref is not None and mine.x == ref.x:
            diff.append((p.method, mine.x, [a - b for a, b in zip(mine.y, ref.y)]))
    if not diff_title:
        diff_title = f"method − random{f', {primary}' if primary else ''}"
    d0 = details(ranked[0]) if ranked else {}
    steps = d0.get("steps")
    ticks = [str(s).split(".")[-1] for s in steps] if isinstance(steps, list) else None
    if ticks is not None and len(ticks) != len(panels[0].lines[0].x):
        ticks = None
    thr = d0.get("thresholds")
    threshold = thr.get("threshold") if isinstance(thr, dict) else None
    threshold = threshold if isinstance(threshold, (int, float)) else None
    return Multiples(panels, diff, diff_title, kinds, str(first.get("x_label") or "x"),
                     str(first.get("y_label") or "y"), ticks, threshold)


def _plot_line(ax, ln: Line, color: str, ls: Any, lw: float, alpha: float = 1.0,
               band: bool = True, band_color: str | None = None) -> None:
    marker = None if len(ln.x) > MARKERS_UP_TO else "o"
    ax.plot(ln.x, ln.y, color=color, linestyle=ls, linewidth=lw, alpha=alpha, marker=marker,
            markersize=2.2)
    if band and ln.std is not None and any(s for s in ln.std if s == s):
        lo = [a - abs(s) for a, s in zip(ln.y, ln.std)]
        hi = [a + abs(s) for a, s in zip(ln.y, ln.std)]
        ax.fill_between(ln.x, lo, hi, color=band_color or color, alpha=0.18, linewidth=0)


def _kind_dash(i: int, base: Any) -> Any:
    return base if i == 0 else SECONDARY_DASHES[(i - 1) % len(SECONDARY_DASHES)]


def _legend_size(m: Multiples) -> int:
    refs = any(p.reference for p in m.panels)
    return (min(len(m.kinds), 4) + refs + (refs and len(m.kinds) == 2)
            + any(any(ln.std or ()) for p in m.panels for ln in p.lines) + (m.threshold is not None))


def multiples_image(m: Multiples, styles: dict[str, Style], ncols: int = 4) -> tuple[str, bytes]:
    """The small multiples as ``(mime, bytes)``: the difference panel first, then one panel per
    method; shared axes; a figure legend of one or two lines (never larger than a panel). The
    title and direction are the page's, beside the figure."""
    n = len(m.panels) + (1 if m.diff else 0)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    # fixed margins in inches (a constrained layout took half the rendering time): the legend's
    # rows on top, tick labels (rotated step names: more) and the x label below, the y label left
    legend_rows = 1 if _legend_size(m) <= 5 else 2
    top, bottom, left = 0.12 + 0.2 * legend_rows + 0.2, 0.75 if m.x_ticks else 0.5, 0.62
    w, h = 2.25 * ncols + left, 1.3 * nrows + 0.3 * (nrows - 1) + top + bottom
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, gridspec_kw=dict(
        left=left / w, right=1 - 0.08 / w, bottom=bottom / h, top=1 - top / h, wspace=0.16,
        hspace=0.3 / 1.3))
    flat = [a for row in axes for a in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    kinds_index = {k: i for i, k in enumerate(m.kinds)}
    many = len(m.kinds) > 2
    k = 0
    if m.diff:
        ax = flat[0]
        ax.axhline(0.0, color="#000000", linestyle="--", linewidth=1.0)
        for method, x, y in m.diff:
            st = _style(styles, method)
            ax.plot(x, y, color=st.color, linestyle=st.linestyle if not st.is_method else "-",
                    linewidth=1.3, marker=None if len(x) > 12 else "o", markersize=2)
        ax.set_title(m.diff_title, fontsize=7.5, loc="left")
        k = 1
    panel_axes = flat[k:n]
    for ax in panel_axes[1:]:
        ax.sharey(panel_axes[0])
    for ax, p in zip(panel_axes, m.panels):
        st = _style(styles, p.method)
        for ref in p.reference:
            i = kinds_index.get(ref.kind, 0)
            if i == 0 or not many:
                _plot_line(ax, ref, "#000000" if i == 0 else "#888888", _kind_dash(i, "--"),
                           1.1 if i == 0 else 0.8, band_color="#555555")
        for ln in p.lines:
            i = kinds_index.get(ln.kind, 0)
            _plot_line(ax, ln, st.color, _kind_dash(i, st.linestyle), 1.8 if i == 0 else 0.9,
                       alpha=1.0 if i == 0 else 0.8, band=i == 0)
        if m.threshold is not None:
            ax.axhline(m.threshold, color="#c0392b", linewidth=0.8, linestyle=(0, (6, 3)),
                       alpha=0.7)
        ax.set_title(p.method, fontsize=9, color=st.color,
                     loc="left", fontweight="bold")
    for idx, ax in enumerate(flat[:n]):
        r, c = divmod(idx, ncols)
        if idx + ncols >= n:          # nothing drawn below: show the x tick labels here
            ax.xaxis.set_tick_params(labelbottom=True)
        if c > 0 and idx > k:         # method panels share one y scale: labels on the left only
            ax.tick_params(labelleft=False)
    for ax in flat[:n]:
        ax.tick_params(labelsize=7, length=2, pad=1)
        ax.grid(True, color="#e4e4e4", linewidth=0.5)
        ax.spines[["top", "right"]].set_visible(False)
    if m.x_ticks:
        for ax in flat[:n]:
            ax.set_xticks(range(len(m.x_ticks)))
        for ax in flat[:n]:
            ax.set_xticklabels(m.x_ticks, rotation=40, ha="right", fontsize=6)
    fig.supxlabel(m.x_label, fontsize=8, y=0.02, va="bottom")
    fig.supylabel(m.y_label, fontsize=8, x=0.01, ha="left")
    handles, labels = [], []
    for i, kind in enumerate(m.kinds[:4]):
        handles.append(Line2D([], [], color="#333333", linestyle=_kind_dash(i, "-"),
                              linewidth=1.8 if i == 0 else 0.9))
        labels.append(f"method{f' {kind}' if kind else ''}" + (" (scored)" if i == 0 and
                                                                 len(m.kinds) > 1 else ""))
    if any(p.reference for p in m.panels):
        handles.append(Line2D([], [], color="#000000", linestyle="--", linewidth=1.1))
        labels.append(f"random{f' {m.kinds[0]}' if m.kinds[0] else ''} (baseline)")
        if not many and len(m.kinds) > 1:
            handles.append(Line2D([], [], color="#888888", linestyle=_kind_dash(1, "--"),
                                  linewidth=0.8))
            labels.append(f"random {m.kinds[1]}")
    if any(any(ln.std or ()) for p in m.panels for ln in p.lines):
        from matplotlib.patches import Patch
        handles.append(Patch(color="#333333", alpha=0.18, linewidth=0))
        labels.append("band: ±1 std")
    if m.threshold is not None:
        handles.append(Line2D([], [], color="#c0392b", linewidth=0.8, linestyle=(0, (6, 3))))
        labels.append(f"threshold {m.threshold:g}")
    # the title is the page's heading above the figure; the legend is one line
    per_row = len(handles) if len(handles) <= 5 else -(-len(handles) // 2)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, 1.0), ncol=per_row,
               fontsize=7.5,
               frameon=False, handlelength=2.4, columnspacing=1.2)
    return figure_image(fig)


def curves_png(group: list[Case], title: str, colors: dict[str, str] | dict[str, Style],
               direction: str = "") -> bytes | None:
    """Image bytes of a group's small multiples (``group`` best first), or ``None`` when no case
    has a usable curve. ``colors``: method styles (or plain colours, for a quick picture);
    ``title`` and ``direction`` are the old signature's, unused (the page's heading says them)."""
    m = group_multiples(group)
    if m is None:
        return None
    styles = {k: (v if isinstance(v, Style) else Style(v, "-", "solid", "method"))
              for k, v in colors.items()}
    return multiples_image(m, styles)[1]


# --- raster or plot, and the cache of drawn images ------------------------------------------------

def looks_raster(image: Any) -> bool:
    """For a picture whose record does not say (results.json written before ``kind``): whether
    it is a raster picture (inputs, maps) rather than a plot. Plots are mostly white background;
    a mosaic of images and maps is not (on the default bench's 241 pictures the similarity plots
    are 72% white or more, every image grid 34% or less)."""
    small = image.convert("L").resize((max(1, image.width // 4), max(1, image.height // 4)))
    hist = small.histogram()
    return sum(hist[250:]) < 0.65 * small.width * small.height


class ImageCache:
    """Drawn page images on disk, keyed by a hash of exactly what they are drawn from.

    The key is the sha256 of: ``RENDER_VERSION``, ``suite.contract.code_fingerprint()`` (the
    matplotlib and Pillow versions and the source of every module of the suite: any change to
    the drawing code, its styles included, makes new keys), and the caller's ``parts`` (the data drawn: e.g. the ``repr`` of a ``Multiples`` and the styles, or
    the bytes' hash of the pictures stacked). A picture whose input changed has another key, so
    it is drawn again; nothing is reused on a name or a date. ``root=None``: no cache.
    """

    def __init__(self, root: Any = None):
        from pathlib import Path

        self.root = Path(root) if root is not None else None
        self.hits = self.misses = 0
        self._salt = None

    def key(self, parts: Any) -> str:
        import hashlib

        from suite.contract import code_fingerprint

        if self._salt is None:
            self._salt = f"{RENDER_VERSION}|{code_fingerprint()}"
        return hashlib.sha256(f"{self._salt}|{parts!r}".encode()).hexdigest()

    def get(self, parts: Any, draw: Any, check: Any = None) -> tuple[str, bytes]:
        """``(mime, bytes)`` from the cache, else ``draw()`` (stored for the next run). ``check``:
        an optional test of a cached body (e.g. that it decodes); an entry failing it is drawn
        again and replaced."""
        if self.root is None:
            return draw()
        key = self.key(parts)
        path = self.root / key[:2] / key
        try:
            head, _, body = path.read_bytes().partition(b"\n")
            if head.startswith(b"image/") and body and (check is None or check(body)):
                self.hits += 1
                return head.decode("ascii"), body
        except OSError:
            pass
        self.misses += 1
        mime, data = draw()
        try:
            import os
            import tempfile

            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(mime.encode("ascii") + b"\n" + data)
            os.replace(tmp, path)
        except OSError:      # a read-only cache still renders the page
            pass
        return mime, data


#: bump when what a drawing function makes from the same input changes in a way the source
#: digest would not show (e.g. a font or rcParams outside these files)
RENDER_VERSION = 1
