"""What every attribution method shares: registration with metadata, the checked ``explain``
entry point, eval-mode handling, per-scale parameters and per-model applicability.

A method is a function ``fn(model, x, target, **params) -> Tensor`` registered with
:func:`method` (the built-ins) or ``suite.registry.register_method``; its one record is the
registry's ``MethodSpec``: the default channel aggregation, an optional per-model applicability
check, ``same_as`` (methods whose raw maps are the same computation, e.g. ``sens_l2`` is
``gradient`` pooled differently, so extraction caches them once) and its role (controls).

Call methods through :func:`explain`, never the raw function: it puts the model in eval mode
(restoring every module's previous mode after), resolves the Grad-CAM layer, checks that the
output has the right shape and contains no NaN or infinity, and names the method when it fails.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator

import torch
from torch import nn

from suite.registry import METHODS, register_method
from suite.specs import AGGREGATIONS, MethodSpec


#: bump when the meaning of any method's output changes (part of the attribution cache key)
METHODS_VERSION = 1


class AttributionError(RuntimeError):
    """A method produced an unusable map (NaN, infinity, wrong shape)."""


class NotApplicableError(ValueError):
    """The method does not apply to this model (the message gives the reason)."""


class MethodError(RuntimeError):
    """A method's own ``AssertionError``, re-raised under this name (the original is the cause):
    the benchmark's verdicts are assertion failures, and a method's code failing is an error of
    the run, never a verdict about the method. Other exceptions propagate unchanged."""


class ModelModifiedError(MethodError):
    """A method changed the model's parameters or buffers. The model was restored to its weights
    before the call; nothing computed from the changed model was kept."""


def method(name: str, *, aggregation: str, description: str, source: str,
           params: dict[str, Any] | None = None, needs_layer: bool = False,
           needs_mask: bool = False, needs_gradient: bool = True, role: str = "method",
           same_as: str | None = None, applies: Callable[[str, nn.Module], str | None] | None = None,
           scale_params: dict[str, dict[str, Any]] | None = None) -> Callable:
    """Register ``fn`` as method ``name`` (decorator; may be stacked to register aliases): the
    built-in methods' form of ``suite.registry.register_method``, with aggregation, description
    and source required."""
    return register_method(name, description=description, source=source, params=params,
                           needs_layer=needs_layer, needs_mask=needs_mask,
                           needs_gradient=needs_gradient, role=role, aggregation=aggregation,
                           same_as=same_as, applies=applies, scale_params=scale_params)


def get(name: str) -> MethodSpec:
    if name not in METHODS:
        raise KeyError(f"method {name!r} is not registered; known: {sorted(METHODS)}")
    return METHODS[name]


def default_aggregation(name: str) -> str:
    """The channel pooling the method's paper uses (what pixel-level metrics should apply)."""
    return get(name).aggregation


def method_params(name: str, scale: str | None = None) -> dict[str, Any]:
    """The parameters of ``name`` at ``scale`` (registered defaults are paper scale).

    ``seed`` is left out: it is the run's seed, passed to ``extract(..., seed=)`` (or to
    ``explain`` as ``seed=``), not a property of the method at a scale.
    """
    return get(name).params_at(scale)


def applies(method_name: str, model_name: str, model: nn.Module | None = None) -> str | None:
    """None when the method applies to the model, else the reason it does not.

    Covers the method-specific checks only (e.g. LRP needs rules for every non-linearity); the
    registry's ``method_applies`` already covers needs_layer / needs_mask. Without ``model`` a
    probe instance of the registered ``model_name`` is built once (CPU, tiny input) and inspected.
    """
    check = get(method_name).applies
    if check is None:
        return None
    if model is not None:
        return check(model_name, model)
    key = (check, model_name)        # the three LRP ids share one check: one probe per model
    if key not in _REASONS:          # build a probe once, keep only the answer (not the weights)
        from suite.models import build_model
        from suite.registry import MODELS

        side = max(32, MODELS[model_name].min_size)
        _REASONS[key] = check(model_name, build_model(model_name, 2, (1, side, side), seed=0))
    return _REASONS[key]


_REASONS: dict[tuple[Callable, str], str | None] = {}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each module's own previous mode afterwards."""
    changed = [m for m in model.modules() if m.training]   # usually none inside extraction
    for m in changed:
        m.training = False
    try:
        yield model
    finally:
        for m in changed:
            m.training = True


def takes(fn: Callable, arg: str) -> bool:
    return arg in inspect.signature(fn).parameters


def explain(method_name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            model_name: str | None = None, **params: Any) -> torch.Tensor:
    """Run method ``method_name`` with the checks every caller needs.

    ``params`` override the registered defaults. For ``needs_layer`` methods, ``layer`` defaults
    to the registered Grad-CAM layer of ``model_name``. Returns (N, C, H, W) or (N, 1, H, W) on
    x's device; raises :class:`AttributionError` on NaN/inf and :class:`NotApplicableError` when
    the method declares the model unsuitable.
    """
    spec = get(method_name)
    if x.dim() != 4:
        raise ValueError(f"method {method_name!r}: x must be (N, C, H, W), got shape {tuple(x.shape)}")
    target = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if target.shape[0] != x.shape[0]:
        raise ValueError(f"method {method_name!r}: {target.shape[0]} targets for {x.shape[0]} images")
    full = dict(spec.params)
    full.update(params)
    if spec.needs_layer and full.get("layer") is None:
        if model_name is None:
            raise ValueError(f"method {method_name!r} needs a layer: pass layer=... or model_name")
        from suite.registry import MODELS

        layer = MODELS[model_name].gradcam_layer if model_name in MODELS else None
        if layer is None:
            raise NotApplicableError(f"{method_name} needs a convolutional layer and model "
                                     f"{model_name!r} declares none")
        full["layer"] = layer
    if spec.needs_mask and full.get("mask") is None:
        raise ValueError(f"method {method_name!r} needs ground-truth masks: pass mask=...")
    check = spec.applies
    if check is not None:
        reason = check(model_name or type(model).__name__, model)
        if reason is not None:
            raise NotApplicableError(reason)
    # isolation: the method gets its own copy of the images (one that writes into its input cannot
    # touch the caller's, e.g. a dataset memoised for every later case) and of the targets, and
    # the model's state is compared with a snapshot afterwards
    xin = x.detach().clone()
    if spec.needs_gradient:
        xin.requires_grad_(True)
    state = _model_state(model)
    snapshot = [t.detach().clone() for t in state]
    try:
        with eval_mode(model):
            attr = spec.explain(model, xin, target.clone(), **full)
    except AssertionError as err:   # a method's own assert must never read as a verdict
        _restore_if_changed(state, snapshot, method_name)
        raise MethodError(f"method {method_name!r} raised AssertionError on model "
                          f"{model_name or type(model).__name__}: {err}") from err
    except BaseException:
        _restore_if_changed(state, snapshot, method_name)
        raise
    _restore_if_changed(state, snapshot, method_name, raise_=True)
    check_attribution(attr, x, method_name, model_name or type(model).__name__)
    return attr.detach()


def _model_state(model: nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def _same(t: torch.Tensor, s: torch.Tensor) -> bool:
    """Equal shape and values, NaN equal to NaN (a model may hold NaN weights; the attribution
    check then names them)."""
    if t.shape != s.shape or t.dtype != s.dtype:
        return False
    if torch.equal(t, s):
        return True
    return bool(((t == s) | (t.isnan() & s.isnan())).all()) if t.is_floating_point() else False


def _restore_if_changed(state: list[torch.Tensor], snapshot: list[torch.Tensor], method_name: str,
                        raise_: bool = False) -> None:
    """Compare the model's tensors with their snapshot; restore any that changed, then raise
    :class:`ModelModifiedError` (when ``raise_``): a case whose method changed the model fails,
    and no later case (nor a cached artifact) sees the changed weights."""
    changed = [i for i, (t, s) in enumerate(zip(state, snapshot)) if not _same(t.detach(), s)]
    for i in changed:
        with torch.no_grad():
            if state[i].shape != snapshot[i].shape:
                state[i].data = snapshot[i]
            else:
                state[i].copy_(snapshot[i])
    if changed and raise_:
        raise ModelModifiedError(
            f"method {method_name!r} changed {len(changed)} of the model's {len(state)} parameter "
            "and buffer tensors; a method must leave the model as it found it (the model was "
            "restored; nothing from this call was kept)")


def check_attribution(attr: torch.Tensor, x: torch.Tensor, method_name: str, model_name: str) -> None:
    """Raise :class:`AttributionError` unless ``attr`` is a finite (N, C|1, H, W) map for ``x``."""
    if not isinstance(attr, torch.Tensor):
        raise AttributionError(f"method {method_name!r} returned {type(attr).__name__}, not a Tensor")
    n, c, h, w = x.shape
    if attr.dim() != 4 or attr.shape[0] != n or attr.shape[2:] != (h, w) or attr.shape[1] not in (1, c):
        raise AttributionError(f"method {method_name!r} on model {model_name}: output shape "
                               f"{tuple(attr.shape)}, expected ({n}, {c} or 1, {h}, {w})")
    finite = torch.isfinite(attr)
    if not bool(finite.all()):
        nan = int(torch.isnan(attr).sum())
        inf = int((~finite).sum()) - nan
        raise AttributionError(
            f"method {method_name!r} produced {nan} NaN and {inf} infinite values (of {attr.numel()}) "
            f"on model {model_name}; the map is unusable. Check the model's outputs and the "
            "method's parameters (e.g. an LRP epsilon of 0 divides by zero pre-activations).")
