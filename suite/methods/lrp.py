"""LRP-epsilon (Bach et al. 2015; epsilon 0.01 and 100 as in Samek et al. 2017), our own.

Why not captum's ``LRP``: it refuses every suite model (no rule for ``Flatten``, ``Identity``,
``AdaptiveMaxPool2d``), it cannot see the ResNet skip addition (not a module), it rewrites module
attributes and reloads the state dict around each call. Why not zennit: it would be a new
dependency, and the epsilon rule needs only the standard "modified gradient" formulation below
(the one zennit itself uses), which also covers additions, concatenations and functional ops.

Formulation: relevance at every tensor is ``a * s`` (activation times a modified gradient ``s``).
For a linear module ``z = W a + b`` (Conv, Linear, BatchNorm in eval mode, average pooling) the
epsilon rule ``R_j = a_j sum_k w_kj R_k / (z_k + eps sign(z_k))`` is the ordinary backward pass
with the incoming gradient first scaled by ``z / (z + eps sign(z))`` (sign(0) = 1). A forward hook
on each such module inserts that scaling (an identity in the forward pass, so outputs are
unchanged). Everything else keeps its ordinary gradient, which for ReLU, max pooling (winner takes
all), flatten, skip additions, concatenation and upsampling is exactly the LRP-0 rule. The
attribution is ``x * s``; with eps = 0 (the scaling is then exactly 1) it equals input x gradient.

Multiplicative gates (CBAM's ``Sigmoid``): the gate output is detached, so the gate is treated as
a constant and all relevance flows through the gated signal ("signal takes all", Arras et al.
2017). Models with other non-linearities (tanh, GELU, softmax, normalisation layers, ...) have no
rule here: :func:`lrp_applies` names them and the method is not applicable.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from suite.methods.base import method
from suite.methods.gradients import input_gradient
from suite.models.tv import ToThreeChannels   # 1 -> 3 channel expand: plumbing, LRP-0 by gradient

_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
           nn.BatchNorm3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
           nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_GATES = (nn.Sigmoid,)
#: modules whose ordinary gradient *is* an LRP-0 rule (piecewise linear, positively homogeneous,
#: or plumbing) or that hold no computation of their own
_PASS = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
         nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Flatten, nn.Identity, nn.Dropout,
         nn.Dropout2d, nn.Upsample, nn.Sequential, nn.ModuleList, nn.ModuleDict, ToThreeChannels)
_SOURCES = ("Bach, Binder, Montavon, Klauschen, Mueller, Samek 2015, PLoS ONE; "
            "Samek et al. 2017, IEEE TNNLS, arXiv 1509.06321")


def _leaf_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if not any(True for _ in m.children()):
            yield name, m


def lrp_applies(model_name: str, model: nn.Module) -> str | None:
    """None if every leaf module has an LRP rule here, else the reason naming the first few."""
    bad = [f"{name} ({type(m).__name__})" for name, m in _leaf_modules(model)
           if not isinstance(m, _LINEAR + _GATES + _PASS)]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        return (f"LRP-epsilon has no propagation rule for {', '.join(bad[:3])}{more} in model "
                f"{model_name}: only linear layers, BatchNorm, pooling, ReLU and sigmoid gates")
    return None


class _Stabilize(torch.autograd.Function):
    """Identity forward; backward scales the gradient by z / (z + eps sign(z))."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.eps = eps
        return z.clone()   # a fresh tensor: an in-place ReLU after the layer may overwrite it

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        sign = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
        return grad * (z / (z + ctx.eps * sign)), None


@contextlib.contextmanager
def epsilon_rule(model: nn.Module, eps: float) -> Iterator[nn.Module]:
    """Hooks that turn the model's backward pass into LRP-epsilon; all removed on exit."""
    handles = []

    def stabilize(module, inputs, output):
        return _Stabilize.apply(output, eps)

    def gate(module, inputs, output):
        return output.detach()

    try:
        for _, m in _leaf_modules(model):
            if eps != 0 and isinstance(m, _LINEAR):
                handles.append(m.register_forward_hook(stabilize))
            elif isinstance(m, _GATES):
                handles.append(m.register_forward_hook(gate))
        yield model
    finally:
        for h in handles:
            h.remove()


def lrp_epsilon(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    with epsilon_rule(model, float(eps)):
        return x.detach() * input_gradient(model, x, target)


def _register(name: str, eps: float) -> None:
    @method(name, aggregation="sum", params={"epsilon": eps}, applies=lrp_applies,
            description=f"LRP-epsilon, epsilon={eps:g} (own; modified-gradient form, sigmoid gates "
                        "detached)", source=_SOURCES)
    def explain(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                epsilon: float = eps) -> torch.Tensor:
        return lrp_epsilon(model, x, target, epsilon)

    explain.__name__ = explain.__qualname__ = name


_register("lrp_zero", 0.0)
_register("lrp_e0p01", 0.01)
_register("lrp_e100", 100.0)
