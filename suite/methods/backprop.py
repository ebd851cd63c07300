"""Modified-backward methods: guided backprop, DeconvNet, Grad-CAM and guided Grad-CAM.

Guided backprop and DeconvNet are our own, not captum's ``GuidedBackprop``/``Deconvolution``.
Captum overrides the backward of ``nn.ReLU`` *modules* with hooks; a ReLU called functionally
(``F.relu``, ``x.relu()``) is invisible to it and silently keeps its ordinary gradient. That is
the case in torchvision's Inception v3 (``BasicConv2d`` calls ``F.relu``), where captum's
"guided backprop" differs from the real one by ~100% (measured). Here :func:`relu_rule` is a
``TorchFunctionMode`` context that replaces *every* ReLU call made while it is active -- module or
functional, in-place or not, a module reused any number of times -- with a ReLU whose backward
implements the rule. Nothing is attached to the model, so nothing can be left behind. Where
captum sees every ReLU, the two agree exactly (tested on the suite's models).

Grad-CAM is captum's ``LayerGradCam`` (ReLU on) with bilinear upsampling (as in Selvaraju et al.;
captum's ``GuidedGradCam`` upsamples with nearest neighbours and uses its own guided backprop, so
guided Grad-CAM is composed here from the two parts).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn
from torch.overrides import TorchFunctionMode

from suite.methods.base import method
from suite.methods.gradients import input_gradient

_SPRINGENBERG = "Springenberg, Dosovitskiy, Brox, Riedmiller 2015, ICLR workshop, arXiv 1412.6806"
_ZEILER = "Zeiler, Fergus 2014, ECCV, arXiv 1311.2901"
_SAMEK = "Samek, Binder, Montavon, Lapuschkin, Mueller 2017, IEEE TNNLS, arXiv 1509.06321"
_SELVARAJU = "Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra 2017, ICCV, arXiv 1610.02391"

_RELUS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu,
                    torch.Tensor.relu_})


class _RuleReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: guided (positive gradient where the input was positive) or
    deconv (positive gradient, the forward mask ignored)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, guided: bool) -> torch.Tensor:  # type: ignore[override]
        out = x.clamp(min=0)
        ctx.guided = guided
        if guided:
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.clamp(min=0)
        if ctx.guided:
            (out,) = ctx.saved_tensors
            grad = grad * (out > 0).to(grad.dtype)
        return grad, None


class _ReluRuleMode(TorchFunctionMode):
    def __init__(self, guided: bool):
        super().__init__()
        self.guided = guided

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            # in-place variants return a new tensor: callers use the return value (nn.ReLU does)
            return _RuleReLU.apply(args[0], self.guided)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def relu_rule(rule: str) -> Iterator[None]:
    """Within the context every ReLU backpropagates by ``rule`` ("guided" or "deconv")."""
    if rule not in ("guided", "deconv"):
        raise ValueError(f"relu rule {rule!r}; allowed: guided, deconv")
    with _ReluRuleMode(guided=rule == "guided"):
        yield


def guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with relu_rule("guided"):
        return input_gradient(model, x, target)


@method("deconv_linf", aggregation="linf", same_as="deconvnet",
        description="deconvolution (DeconvNet) with L-infinity channel pooling", source=_SAMEK)
@method("deconv_l2", aggregation="l2", same_as="deconvnet",
        description="deconvolution (DeconvNet) with L2 channel pooling", source=_SAMEK)
@method("deconvnet", aggregation="abs_sum",
        description="DeconvNet: backward pass passing only positive gradients through ReLUs (own)",
        source=_ZEILER)
def deconvnet(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with relu_rule("deconv"):
        return input_gradient(model, x, target)


@method("guidedbp", aggregation="abs_sum",
        description="guided backprop: positive gradients through ReLUs with positive input (own)",
        source=_SPRINGENBERG)
def guidedbp(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return guided_backprop(model, x, target)


def _layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    return model.get_submodule(layer) if isinstance(layer, str) else layer


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | nn.Module,
             interpolate: str = "bilinear") -> torch.Tensor:
    cam = LayerGradCam(model, _layer(model, layer)).attribute(x, target=target,
                                                              relu_attributions=True)
    if cam.dim() != 4 or cam.shape[1] != 1:
        raise ValueError(f"Grad-CAM layer {layer!r} gives a map of shape {tuple(cam.shape)}; it "
                         "must output a (N, C, h, w) feature map")
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode=interpolate)


@method("gradcam", aggregation="sum", needs_layer=True,
        params={"layer": None, "interpolate": "bilinear"},
        description="Grad-CAM at the model's declared layer, ReLU applied, upsampled to the input "
                    "(captum LayerGradCam)", source=_SELVARAJU)
def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, layer: str | nn.Module,
            interpolate: str = "bilinear") -> torch.Tensor:
    return grad_cam(model, x, target, layer, interpolate)


@method("ggcam", aggregation="abs_sum", needs_layer=True,
        params={"layer": None, "interpolate": "bilinear"},
        description="guided Grad-CAM: guided backprop x upsampled Grad-CAM", source=_SELVARAJU)
def ggcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, layer: str | nn.Module,
          interpolate: str = "bilinear") -> torch.Tensor:
    return guided_backprop(model, x, target) * grad_cam(model, x, target, layer, interpolate)


def spatial_layers(model: nn.Module, model_name: str, in_shape: tuple[int, ...]) -> list[str]:
    """The model's declared layers (input to output, ``suite.models.layer_names``) whose output is
    a (N, C, h, w) feature map, found with one probe forward pass on zeros of ``in_shape``."""
    from suite.methods.base import eval_mode
    from suite.models import layer_names

    layers = layer_names(model, model_name)
    dims: dict[str, int] = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: dims.__setitem__(n, o.dim() if isinstance(o, torch.Tensor) else 0))
        for n in layers]
    try:
        first = next(iter(model.parameters()), None)
        probe = torch.zeros((1,) + tuple(in_shape), device=first.device if first is not None else "cpu",
                            dtype=first.dtype if first is not None else torch.float32)
        with torch.no_grad(), eval_mode(model):
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return [n for n in layers if dims.get(n) == 4]


def gradcam_by_layer(model: nn.Module, model_name: str, x: torch.Tensor,
                     target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Grad-CAM (ReLU, bilinear upsampling) at every declared layer with a spatial output, input
    to output, and at the model's Grad-CAM layer (last, when it is not among them): the "saliency
    maps by layers" picture. {layer: (N, 1, H, W)}."""
    from suite.methods.base import eval_mode
    from suite.registry import MODELS

    layers = spatial_layers(model, model_name, tuple(x.shape[1:]))
    cam_layer = MODELS[model_name].gradcam_layer if model_name in MODELS else None
    if cam_layer is not None and cam_layer not in layers:
        layers.append(cam_layer)
    out = {}
    with eval_mode(model):
        for layer in layers:
            xin = x.detach().clone().requires_grad_(True)
            out[layer] = grad_cam(model, xin, target, layer).detach()
    return out
