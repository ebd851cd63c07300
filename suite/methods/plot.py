"""Grids of attribution maps for the report: one image (a mosaic) per figure.

A grid of r x c small images drawn as r x c matplotlib Axes costs seconds per figure (Axes
creation and layout dominate: 2.3 s for 6 x 21 maps). Here every cell is coloured in numpy
(``colorize``), the cells are tiled into one RGB array (``mosaic``) and drawn with one ``imshow``
plus text labels (``draw_mosaic``): the same picture in a fraction of the time.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from suite.methods.aggregate import aggregate

#: white gutter between cells, in pixels of the largest cell
GAP = 2


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def colorize(v: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """(H, W) values -> (H, W, 3) RGB in [0, 1] through matplotlib colormap ``cmap`` on
    [vmin, vmax] (values outside are clipped, as imshow does)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    return colormaps[cmap](Normalize(vmin, vmax, clip=True)(v))[..., :3]


def image_rgb(img: np.ndarray) -> np.ndarray:
    """A (C, H, W) image in [0, 1] as (H, W, 3) RGB: grey for one channel, clipped colour."""
    img = np.asarray(img, dtype=np.float64).transpose(1, 2, 0)
    if img.shape[-1] == 1:
        return np.repeat(np.clip(img, 0, 1), 3, axis=-1)
    return np.clip(img[..., :3], 0, 1)


def map_rgb(v: np.ndarray) -> np.ndarray:
    """A pooled (H, W) map coloured by its own range: signed maps on a symmetric blue-white-red
    scale, non-negative maps from 0 to their maximum (inferno)."""
    if v.min() < 0:
        lim = float(np.abs(v).max()) or 1.0
        return colorize(v, "bwr", -lim, lim)
    return colorize(v, "inferno", 0.0, float(v.max()) or 1.0)


def mosaic(cells: Sequence[Sequence[np.ndarray]], gap: int = GAP) -> np.ndarray:
    """Tile rows of (h, w, 3) RGB cells into one array with white gutters of ``gap`` pixels; a
    cell smaller than the largest is enlarged by pixel repetition (whole factors) and centred."""
    if not cells or not cells[0]:
        raise ValueError("mosaic needs at least one row with one cell")
    ncol = len(cells[0])
    if any(len(r) != ncol for r in cells):
        raise ValueError(f"every row needs {ncol} cells, got {[len(r) for r in cells]}")
    ch = max(c.shape[0] for r in cells for c in r)
    cw = max(c.shape[1] for r in cells for c in r)
    out = np.ones((len(cells) * (ch + gap) - gap, ncol * (cw + gap) - gap, 3))
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            k = max(1, min(ch // c.shape[0], cw // c.shape[1]))
            c = np.repeat(np.repeat(c, k, axis=0), k, axis=1)
            y = i * (ch + gap) + (ch - c.shape[0]) // 2
            x = j * (cw + gap) + (cw - c.shape[1]) // 2
            out[y:y + c.shape[0], x:x + c.shape[1]] = c
    return out


def draw_mosaic(rgb: np.ndarray, n_rows: int, n_cols: int, *, col_titles: Sequence[str] = (),
                row_titles: Sequence[str] = (), title: str = "", cell: float = 1.2,
                col_rotation: float = 0.0) -> Figure:
    """One Axes showing ``mosaic`` output, column titles above the cells, row titles at left."""
    fig = Figure(figsize=(cell * n_cols + (0.9 if row_titles else 0.2),
                          cell * n_rows + 0.5 + (0.3 if title else 0.0)))
    left = 0.9 / fig.get_figwidth() if row_titles else 0.1 / fig.get_figwidth()
    top = 1.0 - (0.45 + (0.3 if title else 0.0)) / fig.get_figheight()
    ax = fig.add_axes((left, 0.05 / fig.get_figheight(), 1.0 - left - 0.1 / fig.get_figwidth(),
                       top - 0.05 / fig.get_figheight()))
    ax.imshow(rgb, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    h, w = rgb.shape[:2]
    cw, ch = (w + GAP) / n_cols, (h + GAP) / n_rows
    for j, t in enumerate(col_titles):
        ax.text((j + 0.5) * cw - GAP / 2, -0.04 * ch, t, ha="center", va="bottom", fontsize=7,
                rotation=col_rotation)
    for i, t in enumerate(row_titles):
        ax.text(-0.05 * cw, (i + 0.5) * ch - GAP / 2, t, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8, y=1.0 - 0.05 / fig.get_figheight(), va="top")
    return fig


def plot_maps(images, maps_by_method: Mapping[str, object], *, aggregation: Mapping[str, str] | None = None,
              max_images: int = 8, cell: float = 1.2) -> Figure:
    """Figure with rows = images (at most ``max_images``), columns = input, then each method.

    ``images``: (N, C, H, W) in [0, 1]; ``maps_by_method``: name -> (N, C or 1, H, W) array or
    tensor. Multi-channel maps are pooled with ``aggregation[name]`` (default: the method's
    registered default if it is registered, else "abs_sum"). Each map is shown with its own
    symmetric colour range (signed maps) or 0..max (non-negative maps): ``map_rgb``.
    """
    rgb, n, titles = _maps_cells(images, maps_by_method, aggregation, max_images)
    return draw_mosaic(rgb, n, len(titles), col_titles=titles, cell=cell)


def maps_mosaic(images, maps_by_method: Mapping[str, object], *,
                aggregation: Mapping[str, str] | None = None, max_images: int = 8) -> np.ndarray:
    """The RGB array ``plot_maps`` draws (rows images, columns input then each method)."""
    return _maps_cells(images, maps_by_method, aggregation, max_images)[0]


def _maps_cells(images, maps_by_method, aggregation, max_images):
    from suite.registry import METHODS

    imgs = _as_numpy(images)
    if imgs.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {imgs.shape}")
    n = min(len(imgs), max_images)
    maps = {}
    for name, m in maps_by_method.items():
        m = _as_numpy(m)
        if m.ndim != 4 or len(m) < n or m.shape[2:] != imgs.shape[2:]:
            raise ValueError(f"map {name!r} has shape {m.shape}; expected (N, C|1, H, W) matching "
                             f"images {imgs.shape}")
        if m.shape[1] > 1:
            how = (aggregation or {}).get(name) or (METHODS[name].aggregation if name in METHODS else "abs_sum")
            m = aggregate(m, how)
        maps[name] = m[:n, 0]
    cells = [[image_rgb(imgs[i])] + [map_rgb(m[i]) for m in maps.values()] for i in range(n)]
    return mosaic(cells), n, ["input"] + list(maps)
