"""The efficient MPRT (Hedstroem et al. 2023): the rise in map complexity from the trained to the
fully randomized model, two model states instead of the cascade's L+1."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from suite.metrics.randomization import cascading_models
from suite.metrics.sanity.randomize import _accuracy, _check_smooth, _layers, _maps
from suite.metrics.sanity.similarity import normalize_maps

def discrete_entropy(maps: np.ndarray, n_bins: int = 100) -> np.ndarray:
    """Per map of ``maps`` (N, ...): the Shannon entropy (nats) of the histogram of its values in
    ``n_bins`` equal bins between its minimum and maximum (``np.histogram(map, bins=n_bins)`` then
    ``scipy.stats.entropy``, Quantus's ``discrete_entropy``). A constant map scores 0."""
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"discrete_entropy expects (N, ...) maps, got shape {a.shape}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    out = np.empty(len(a))
    for i, m in enumerate(a.reshape(len(a), -1)):
        counts = np.histogram(m, bins=int(n_bins))[0]
        p = counts[counts > 0] / m.size
        out[i] = float(-(p * np.log(p)).sum()) + 0.0
    return out


@dataclass(frozen=True)
class EfficientMPRTResult:
    """eMPRT (Hedstroem et al. 2023): the relative rise in map complexity (discrete entropy)
    from the trained to the fully randomized model; higher is better (a map that depends on the
    model turns to noise). ``rise`` is the mean over images of (H_random - H_trained) / H_trained
    over the images whose trained map is not constant (``n_constant`` others)."""

    method: str
    n_bins: int
    complexity_trained: float
    complexity_random: float
    rise: float
    rise_per_image: tuple[float, ...]
    accuracy_trained: float
    accuracy_random: float
    n_constant: int


def efficient_mprt(model: nn.Module, model_name: str, method: str, x: torch.Tensor,
                   labels: torch.Tensor, *, layers: Sequence[str] | None = None, seed: int = 0,
                   params: dict | None = None, device: str = "cpu", batch_size: int = 128,
                   n_bins: int = 100, smooth: tuple[int, float] | None = None) -> EfficientMPRTResult:
    """Efficient MPRT: only two model states, the trained model and the fully randomized one (every
    declared layer re-initialised, the cascading test's last step). Maps are pooled over channels
    by the method's default aggregation, one-channel maps included (no further |.|, as Quantus's
    EfficientMPRT with abs=False); the entropy is invariant to their scale. ``smooth``: as in :func:`cascading_randomization`."""
    from suite.methods import default_aggregation
    from suite.training import predict

    if len(x) != len(labels) or len(x) == 0:
        raise ValueError(f"efficient_mprt: {len(x)} images and {len(labels)} labels; need equal, > 0")
    layers = _layers(model, model_name, layers)
    how = default_aggregation(method)
    target = predict(model, x, device=device, batch_size=max(batch_size, 256)).argmax(1)
    kw = dict(seed=seed, params=params, device=device, batch_size=batch_size,
              smooth=_check_smooth(smooth), noise_seed=seed)
    h0 = discrete_entropy(normalize_maps(_maps(model, model_name, method, x, target, **kw), how), n_bins)
    acc0, _ = _accuracy(model, x, labels, target, device, batch_size)
    *_, (_, full) = cascading_models(model, layers, seed=seed)
    h1 = discrete_entropy(normalize_maps(_maps(full, model_name, method, x, target, **kw), how), n_bins)
    acc1, _ = _accuracy(full, x, labels, target, device, batch_size)
    ok = h0 > 0
    rise = np.full(len(h0), np.nan)
    rise[ok] = (h1[ok] - h0[ok]) / h0[ok]
    return EfficientMPRTResult(method, int(n_bins), float(h0.mean()), float(h1.mean()),
                               float(rise[ok].mean()) if ok.any() else float("nan"),
                               tuple(float(r) for r in rise), acc0, acc1, int((~ok).sum()))
