"""A grid of attribution maps: one row per image, the input then one column per method."""
from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from suite.methods.aggregate import aggregate


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def plot_maps(images, maps_by_method: Mapping[str, object], *, aggregation: Mapping[str, str] | None = None,
              max_images: int = 8, cell: float = 1.4) -> Figure:
    """Figure with rows = images (at most ``max_images``), columns = input, then each method.

    ``images``: (N, C, H, W) in [0, 1]; ``maps_by_method``: name -> (N, C or 1, H, W) array or
    tensor. Multi-channel maps are pooled with ``aggregation[name]`` (default: the method's
    registered default if it is registered, else "abs_sum"). Each map is shown with its own
    symmetric colour range (signed maps) or 0..max (non-negative maps).
    """
    from suite.methods.base import INFO

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
            how = (aggregation or {}).get(name) or (INFO[name].aggregation if name in INFO else "abs_sum")
            m = aggregate(m, how)
        maps[name] = m[:n, 0]
    cols = 1 + len(maps)
    fig = Figure(figsize=(cell * cols, cell * n), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        img = imgs[i].transpose(1, 2, 0)
        axes[i, 0].imshow(img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0, 1),
                          cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
        for j, (name, m) in enumerate(maps.items(), start=1):
            v = m[i]
            if v.min() < 0:
                lim = float(np.abs(v).max()) or 1.0
                axes[i, j].imshow(v, cmap="bwr", vmin=-lim, vmax=lim)
            else:
                axes[i, j].imshow(v, cmap="inferno", vmin=0, vmax=float(v.max()) or 1.0)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    for j, name in enumerate(maps, start=1):
        axes[0, j].set_title(name, fontsize=8)
    return fig
