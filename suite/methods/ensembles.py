"""The SmoothGrad family over every base method: SmoothGrad (SG, the mean map over noisy copies of
the input), SmoothGrad-Squared (SG-SQ, the mean squared map) and VarGrad (VAR, their variance).

Hooker et al. 2019 (ROAR) evaluate SG, SG-SQ and VarGrad of each base estimator (gradient,
integrated gradients, guided backprop: 3 bases x {base, SG, SG-SQ, VAR} = 12 estimators); the
WhiteBox-style studies apply the three ensembles to every attribution method (input x gradient,
DeconvNet, Grad-CAM, guided Grad-CAM as well). The gradient's ensembles keep their ids
``smoothgrad`` / ``sgsquared`` / ``vargrad`` (``suite.methods.gradients``); the others are
``<ensemble>_<base>``:

    ensemble   sg (SmoothGrad), sgsq (SmoothGrad-Squared), var (VarGrad)
    base       ig (intgrad), gbp (guidedbp), inxg (ixg), dcn (deconvnet), cam (gradcam),
               gcam (ggcam)

short codes because ``pytest -k`` matches substrings and the registry refuses an id that contains
another (``sg_intgrad`` would be selected by ``-k intgrad``).

Every ensemble draws the same noise as ``smoothgrad``: per image from a generator seeded by
(seed, image index), std ``noise_level * (max - min)`` of the image, so maps are reproducible and
independent of the batch split (``gradients.noise_moments``). The base method's own parameters
(integrated gradients' steps, Grad-CAM's layer) are the ensemble's parameters too, with the
base's per-scale values. Channel pooling: SG keeps its base's (a mean of signed maps); SG-SQ and
VarGrad are non-negative and sum over channels, as ``sgsquared`` / ``vargrad``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from captum.attr import InputXGradient
from torch import nn

from suite.methods import backprop, gradients
from suite.methods.base import method
from suite.methods.gradients import _NOISE_PARAMS, _SCALE_SAMPLES, noise_moments
from suite.registry import METHODS

_SMILKOV = "Smilkov, Thorat, Kim, Viegas, Wattenberg 2017, arXiv 1706.03825"
_HOOKER = "Hooker, Erhan, Kindermans, Kim 2019, NeurIPS, arXiv 1806.10758"
_ADEBAYO = "Adebayo, Gilmer, Goodfellow, Kim 2018, arXiv 1810.03307"

#: ensemble code -> (name, what it returns from the (mean, mean of squares) moments, source)
ENSEMBLES: dict[str, tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]] = {
    "sg": ("SmoothGrad", lambda m1, m2: m1, _SMILKOV),
    "sgsq": ("SmoothGrad-Squared", lambda m1, m2: m2, _HOOKER),
    "var": ("VarGrad", lambda m1, m2: (m2 - m1 * m1).clamp(min=0), f"{_ADEBAYO}; {_HOOKER}"),
}


def _ig(model, x, t, *, n_steps, baseline, method, internal_batch_size):
    return gradients.integrated_gradients(model, x, t, n_steps=n_steps, baseline=baseline,
                                          method=method, internal_batch_size=internal_batch_size)


def _cam(model, x, t, *, layer, interpolate):
    return backprop.grad_cam(model, x, t, layer, interpolate)


def _gcam(model, x, t, *, layer, interpolate):
    return backprop.ggcam(model, x, t, layer=layer, interpolate=interpolate)


#: base code -> (base method id, base function(model, x, target, **base params), cost parameter)
BASES: dict[str, tuple[str, Callable[..., torch.Tensor], str | None]] = {
    "ig": ("intgrad", _ig, "n_steps"),
    "gbp": ("guidedbp", lambda model, x, t: backprop.guided_backprop(model, x, t), None),
    "inxg": ("ixg", lambda model, x, t: InputXGradient(model).attribute(x, target=t), None),
    "dcn": ("deconvnet", backprop.deconvnet, None),
    "cam": ("gradcam", _cam, None),
    "gcam": ("ggcam", _gcam, None),
}
#: Hooker et al.'s base estimators (the gradient's ensembles are smoothgrad / sgsquared / vargrad)
HOOKER_BASES = ("ig", "gbp")


def ensemble_id(ensemble: str, base: str) -> str:
    """The registered id of ``ensemble`` ("sg", "sgsq", "var") of base method id ``base``."""
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble {ensemble!r}; allowed: {', '.join(ENSEMBLES)}")
    if base == "gradient":
        return {"sg": "smoothgrad", "sgsq": "sgsquared", "var": "vargrad"}[ensemble]
    codes = {b: c for c, (b, _, _) in BASES.items()}
    if base not in codes:
        raise ValueError(f"base method {base!r} has no ensembles; allowed: gradient, "
                         f"{', '.join(codes)}")
    return f"{ensemble}_{codes[base]}"


def _register(ens: str, code: str) -> None:
    title, finish, source = ENSEMBLES[ens]
    base_id, fn, cost_param = BASES[code]
    spec = METHODS[base_id]
    base_params = {k: v for k, v in spec.params}
    base_scale = {s: dict(v) for s, v in spec.scale_params}
    scale_params = {s: {**base_scale.get(s, {}), **_SCALE_SAMPLES[s]} for s in _SCALE_SAMPLES}
    params: dict[str, Any] = {**base_params, **_NOISE_PARAMS}
    aggregation = spec.aggregation if ens == "sg" else "sum"

    def explain(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, n_samples: int = 25,
                noise_level: float = 0.15, seed: int = 0, index: torch.Tensor | None = None,
                max_images: int = 1024, **kw: Any) -> torch.Tensor:
        unknown = set(kw) - set(base_params)
        if unknown:
            raise TypeError(f"{ens}_{code}: unknown parameter(s) {sorted(unknown)}")
        kw = {**base_params, **kw}
        cost = int(kw[cost_param]) if cost_param else 1

        def base(m, xs, ts):
            return fn(m, xs, ts, **kw)

        m1, m2 = noise_moments(model, x, target, n_samples=n_samples, noise_level=noise_level,
                               seed=seed, index=index, max_images=max_images, base=base, cost=cost)
        return finish(m1, m2)

    explain.__name__ = explain.__qualname__ = f"{ens}_{code}"
    method(f"{ens}_{code}", aggregation=aggregation, needs_layer=spec.needs_layer, params=params,
           scale_params=scale_params, source=f"{source}; base: {spec.source}",
           description=f"{title} of {base_id}: over noisy copies (std 0.15 x (max - min) per "
                       "image, the smoothgrad noise)")(explain)


for _ens in ENSEMBLES:
    for _code in BASES:
        _register(_ens, _code)

#: every ensemble id, the gradient's included: {(ensemble, base method id): id}
IDS = {(e, b): ensemble_id(e, b) for e in ENSEMBLES for b in ("gradient",) + tuple(
    v[0] for v in BASES.values())}

__all__ = ["BASES", "ENSEMBLES", "HOOKER_BASES", "IDS", "ensemble_id"]
