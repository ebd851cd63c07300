"""Channel aggregation: an explicit, named step from (N, C, H, W) maps to (N, 1, H, W).

- ``abs_sum``: sum of absolute values over channels (captum's visualisation default).
- ``l2``: Euclidean norm over channels (Samek et al. 2017, "sensitivity, L2 pooling").
- ``linf``: maximum absolute value over channels (Simonyan et al. 2014; Samek's L-inf pooling).
- ``sum``: signed sum over channels (relevance-conserving methods: LRP, IG, input x gradient).

Works on torch tensors and numpy arrays alike and returns the same kind.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from suite.methods.base import AGGREGATIONS

A = TypeVar("A", torch.Tensor, np.ndarray)


def aggregate(attr: A, how: str) -> A:
    """Pool the channel axis of a (N, C, H, W) map into (N, 1, H, W) with rule ``how``."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown channel aggregation {how!r}; allowed: {', '.join(AGGREGATIONS)}")
    if attr.ndim != 4:
        raise ValueError(f"aggregate expects a (N, C, H, W) map, got shape {tuple(attr.shape)}")
    if isinstance(attr, torch.Tensor):
        if how == "abs_sum":
            return attr.abs().sum(dim=1, keepdim=True)
        if how == "l2":
            return torch.linalg.vector_norm(attr, ord=2, dim=1, keepdim=True)
        if how == "linf":
            return attr.abs().amax(dim=1, keepdim=True)
        return attr.sum(dim=1, keepdim=True)
    attr = np.asarray(attr)
    if how == "abs_sum":
        return np.abs(attr).sum(axis=1, keepdims=True)
    if how == "l2":
        return np.sqrt(np.square(attr).sum(axis=1, keepdims=True))
    if how == "linf":
        return np.abs(attr).max(axis=1, keepdims=True)
    return attr.sum(axis=1, keepdims=True)
