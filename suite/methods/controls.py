"""Model-independent controls: a seeded random map, Sobel edges of the input, and the oracle
(the ground-truth mask). None of them looks at the model; each is registered with its role
(``suite.controls``: random is the baseline, sobel a model-independent control, oracle the ground truth).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.base import method
from suite.methods.gradients import SALT_RANDOM, image_seeds

_HOOKER = "Hooker, Erhan, Kindermans, Kim 2019, NeurIPS, arXiv 1806.10758"


@method("random", aggregation="sum", params={"seed": 0}, role="baseline", needs_gradient=False,
        description="uniform random map per element; image i's map is a function of (seed, index i) "
                    "only, so it does not depend on the model or the batch split", source=_HOOKER)
def random_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, seed: int = 0,
               index: torch.Tensor | None = None) -> torch.Tensor:
    """``index`` holds each image's position in its dataset (default 0..N-1)."""
    maps = [torch.rand(tuple(x.shape[1:]), generator=torch.Generator().manual_seed(s),
                       dtype=x.dtype)
            for s in image_seeds(seed, index, x.shape[0], SALT_RANDOM)]
    return torch.stack(maps).to(x.device)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel ``hypot(sobel_rows, sobel_cols)``, equal to ``scipy.ndimage.sobel`` with
    mode="reflect" (for a 3x3 kernel scipy's reflect border is edge replication)."""
    n, c, h, w = x.shape
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    s = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernels = torch.stack([torch.outer(d, s), torch.outer(s, d)]).unsqueeze(1)  # rows, cols
    padded = F.pad(x.detach().reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(padded, kernels)
    return torch.hypot(g[:, 0], g[:, 1]).reshape(n, c, h, w)


@method("sobel", aggregation="sum", role="control", needs_gradient=False,
        description="Sobel edge magnitude of the input per channel (model-independent)",
        source=_HOOKER)
def sobel(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return sobel_magnitude(x)


@method("oracle", aggregation="sum", params={"mask": None}, role="oracle", needs_mask=True,
        needs_gradient=False,
        description="the ground-truth object mask (an upper reference for localisation metrics)",
        source="ground truth of datasets with masks")
def oracle(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
           mask: torch.Tensor) -> torch.Tensor:
    """``mask``: (N, H, W) or (N, 1|C, H, W), any dtype; returned as x's dtype on x's device."""
    mask = torch.as_tensor(mask)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
        raise ValueError(f"oracle: mask of shape {tuple(mask.shape)} does not fit images "
                         f"{tuple(x.shape)}; expected (N, H, W) or (N, 1, H, W)")
    return mask.to(device=x.device, dtype=x.dtype)
