"""How the sanity checks compare maps: channel pooling and normalisation, then the batched
similarity measures (``kernels.similarity``) against the reference maps."""
from __future__ import annotations

import numpy as np
import torch

from kernels.similarity import MapSimilarity

SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog")

PRIMARY = "spearman_abs"


def normalize_maps(attr: np.ndarray | torch.Tensor, aggregation: str) -> np.ndarray:
    """(N, C, H, W) maps -> (N, H, W) float32, channels pooled by ``aggregation``, each map
    divided by its maximum absolute value (an all-zero map stays zero).

    The pooling applies to one-channel maps too (``suite.methods.aggregate``): "abs_sum", "l2"
    and "linf" of one channel are its absolute value, "sum" is the identity. (Before
    SANITY_VERSION 2 one-channel maps skipped it and stayed signed.)

    float32 throughout, the precision of the attributions themselves; the similarity kernels
    widen it exactly to float64, and the ranks sort on the 32 significant bits (about half the
    radix passes of full float64 keys)."""
    from suite.methods import aggregate

    a = attr.detach().cpu().numpy() if isinstance(attr, torch.Tensor) else np.asarray(attr)
    if a.ndim != 4:
        raise ValueError(f"normalize_maps expects (N, C, H, W), got shape {a.shape}")
    a = aggregate(a.astype(np.float32, copy=False), aggregation)[:, 0]
    scale = np.abs(a).reshape(len(a), -1).max(axis=1)
    scale[scale == 0] = 1.0
    return a / scale[:, None, None]


def hog_cell(h: int, w: int) -> int:
    """HOG cell side for (H, W) maps: about a quarter of the shorter side, even, at least 2."""
    return max(2, (min(h, w) // 4) // 2 * 2)


def comparer(ref: np.ndarray) -> MapSimilarity:
    """The batched similarity measures against normalised (N, H, W) reference maps: the
    reference's ranks and HOG features are computed once, each compared set in one parallel pass
    (``kernels.similarity.MapSimilarity``). SSIM: data range 1, window ``min(7, ...)``; HOG cells
    of ``hog_cell(H, W)`` pixels (none, NaN, on maps smaller than two cells)."""
    ref = np.asarray(ref)
    if ref.ndim != 3:
        raise ValueError(f"reference maps must be (N, H, W), got shape {ref.shape}")
    h, w = ref.shape[1:]
    cell = hog_cell(h, w)
    return MapSimilarity(ref, data_range=1.0, win_size=min(7, (min(h, w) - 1) // 2 * 2 + 1),
                         pixels_per_cell=(cell, cell) if min(h, w) >= 2 * cell else None)


def _finish(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # NaN (a constant map) counts as 0; n_constant flags those images
    nan = np.zeros(len(out["ssim"]), dtype=bool)
    for k in ("spearman_abs", "spearman", "hog"):
        nan |= np.isnan(out[k])
        out[k] = np.nan_to_num(out[k], nan=0.0)
    out["n_constant"] = nan
    return out


def similarities(ref: np.ndarray, other: np.ndarray,
                 comp: MapSimilarity | None = None) -> dict[str, np.ndarray]:
    """Per-image similarity of normalised (N, H, W) maps under every measure of ``SIMILARITIES``.

    NaN (a constant map) is returned as 0; ``n_constant`` counts those images. ``comp``: a
    ``comparer(ref)`` to reuse (the reference's side is then not recomputed).
    """
    if ref.shape != other.shape or ref.ndim != 3:
        raise ValueError(f"similarities expects two (N, H, W) arrays, got {ref.shape}, {other.shape}")
    return _finish((comp or comparer(ref))(other))
