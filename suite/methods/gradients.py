"""Gradient-based methods: gradient (sensitivity), input x gradient, integrated gradients, and
the SmoothGrad family.

gradient / ixg / intgrad are captum's ``Saliency(abs=False)``, ``InputXGradient`` and
``IntegratedGradients``. The SmoothGrad family is our own noise loop around captum's
``Saliency``, not captum's ``NoiseTunnel``, for two reasons: NoiseTunnel takes one noise std per
input tensor (the protocol needs 0.15 x (max - min) of *each image*), and it draws noise from the
global RNG in batch order, so a map would depend on the batch it was computed in. Here each
image's noise comes from its own generator seeded by (seed, image index): maps are reproducible
and independent of the batch split.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from suite.methods.base import method

_SIMONYAN = "Simonyan, Vedaldi, Zisserman 2014, arXiv 1312.6034"
_SAMEK = "Samek, Binder, Montavon, Lapuschkin, Mueller 2017, IEEE TNNLS, arXiv 1509.06321"
_SMILKOV = "Smilkov, Thorat, Kim, Viegas, Wattenberg 2017, arXiv 1706.03825"
_HOOKER = "Hooker, Erhan, Kindermans, Kim 2019, NeurIPS, arXiv 1806.10758"
_SCALE_SAMPLES = {"smoke": {"n_samples": 4}, "small": {"n_samples": 10}, "paper": {"n_samples": 25}}
_SCALE_STEPS = {"smoke": {"n_steps": 8}, "small": {"n_steps": 16}, "paper": {"n_steps": 50}}

#: salts that keep the random streams of different uses of the same (seed, index) apart
SALT_RANDOM, SALT_NOISE = 0, 1


def image_seeds(seed: int, index: torch.Tensor | None, n: int, salt: int) -> list[int]:
    """One 63-bit seed per image, a function of (seed, salt, image index) only."""
    idx = range(n) if index is None else [int(i) for i in index.reshape(-1).tolist()]
    if len(idx) != n:
        raise ValueError(f"index has {len(idx)} entries for {n} images")
    return [int(np.random.SeedSequence([int(seed), salt, i]).generate_state(1, np.uint64)[0] >> 1)
            for i in idx]


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d model(x)[n, target[n]] / dx, signed (captum Saliency with abs=False)."""
    return Saliency(model).attribute(x, target=target, abs=False)


@method("sens_linf", aggregation="linf", same_as="gradient",
        description="sensitivity (gradient) with L-infinity channel pooling", source=_SAMEK)
@method("sens_l2", aggregation="l2", same_as="gradient",
        description="sensitivity (gradient) with L2 channel pooling", source=_SAMEK)
@method("gradient", aggregation="abs_sum",
        description="vanilla gradient of the target logit w.r.t. the input (captum Saliency, signed)",
        source=_SIMONYAN)
def gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return input_gradient(model, x, target)


@method("ixg", aggregation="sum", description="input x gradient (captum InputXGradient)",
        source="Shrikumar, Greenside, Shcherbina, Kundaje 2016, arXiv 1605.01713")
def input_x_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return InputXGradient(model).attribute(x, target=target)


IG_RULES = ("gausslegendre", "riemann_right", "riemann_left", "riemann_middle")


@method("intgrad", aggregation="sum",
        description="integrated gradients from a constant baseline (captum IntegratedGradients; "
                    "Gauss-Legendre nodes, method='riemann_right' is the paper's sum)",
        source="Sundararajan, Taly, Yan 2017, ICML, arXiv 1703.01365",
        params={"n_steps": 50, "baseline": 0.0, "method": "gausslegendre",
                "internal_batch_size": None},
        scale_params=_SCALE_STEPS)
def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                         n_steps: int = 50, baseline: float = 0.0, method: str = "gausslegendre",
                         internal_batch_size: int | None = None) -> torch.Tensor:
    """Captum's IG. Two captum 0.9 facts: its quadrature weights are cast to float32 (so on a
    linear float64 model the result is exact to ~1e-7 relative, not to float64 precision), and
    its "riemann_trapezoid" weights sum to (n - 1) / n instead of 1, so completeness fails by a
    factor; that rule is refused here."""
    if method not in IG_RULES:
        raise ValueError(f"intgrad: method {method!r} is not allowed; use one of {IG_RULES} "
                         "(captum's riemann_trapezoid weights do not sum to 1)")
    return IntegratedGradients(model).attribute(
        x, baselines=float(baseline), target=target, n_steps=int(n_steps), method=method,
        internal_batch_size=internal_batch_size)


def noise_moments(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, n_samples: int,
                  noise_level: float, seed: int, index: torch.Tensor | None,
                  max_images: int, base: Callable[..., torch.Tensor] | None = None,
                  cost: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean map and mean squared map of ``base`` over ``n_samples`` noisy copies of each image.

    ``base(model, noisy_x, target) -> map`` is the estimator the ensemble is taken of (default:
    the signed gradient, captum ``Saliency``). Noise std per image = ``noise_level * (max - min)``
    of that image. Noise is drawn on the CPU from per-image generators seeded by (seed, image
    index) (so maps do not depend on the device, the batch split or the base method: every
    ensemble of the same image sees the same noisy copies) and ``base`` runs on at most
    ``max_images // cost`` noisy images at a time (bounded memory; ``cost``: forward passes per
    image of one base call, e.g. integrated gradients' ``n_steps``).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    n = x.shape[0]
    flat = x.detach().reshape(n, -1)
    sigma = (noise_level * (flat.amax(1) - flat.amin(1))).reshape(1, n, 1, 1, 1)
    gens = [torch.Generator().manual_seed(s) for s in image_seeds(seed, index, n, SALT_NOISE)]
    # (n_samples, N, C, H, W): image i's samples come from its own generator, in sample order
    noise = torch.stack([torch.randn((n_samples,) + tuple(x.shape[1:]), generator=g,
                                     dtype=x.dtype) for g in gens], dim=1).to(x.device)
    chunk = max(1, min(n_samples, max_images // max(n * max(int(cost), 1), 1)))
    s1 = s2 = None
    saliency = Saliency(model) if base is None else None
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        noisy = (x.detach().unsqueeze(0) + sigma * noise[start:start + k]).reshape((k * n,) + x.shape[1:])
        noisy.requires_grad_(True)
        if saliency is not None:
            g = saliency.attribute(noisy, target=target.repeat(k), abs=False)
        else:
            g = base(model, noisy, target.repeat(k))
        g = g.detach().reshape((k, n) + tuple(g.shape[1:]))
        if s1 is None:
            s1, s2 = torch.zeros_like(g[0]), torch.zeros_like(g[0])
        s1 += g.sum(0)
        s2 += (g * g).sum(0)
    return s1 / n_samples, s2 / n_samples


_NOISE_PARAMS: dict[str, Any] = {"n_samples": 25, "noise_level": 0.15, "seed": 0, "max_images": 1024}


@method("smoothgrad", aggregation="abs_sum", params=_NOISE_PARAMS, scale_params=_SCALE_SAMPLES,
        description="SmoothGrad: mean gradient over noisy copies (std 0.15 x (max - min) per image)",
        source=_SMILKOV)
def smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, n_samples: int = 25,
               noise_level: float = 0.15, seed: int = 0, index: torch.Tensor | None = None,
               max_images: int = 1024) -> torch.Tensor:
    return noise_moments(model, x, target, n_samples=n_samples, noise_level=noise_level,
                         seed=seed, index=index, max_images=max_images)[0]


@method("sgsquared", aggregation="sum", params=_NOISE_PARAMS, scale_params=_SCALE_SAMPLES,
        description="SmoothGrad-Squared: mean squared gradient over noisy copies", source=_HOOKER)
def smoothgrad_squared(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                       n_samples: int = 25, noise_level: float = 0.15, seed: int = 0,
                       index: torch.Tensor | None = None, max_images: int = 1024) -> torch.Tensor:
    return noise_moments(model, x, target, n_samples=n_samples, noise_level=noise_level,
                         seed=seed, index=index, max_images=max_images)[1]


@method("vargrad", aggregation="sum", params=_NOISE_PARAMS, scale_params=_SCALE_SAMPLES,
        description="VarGrad: variance of the gradient over noisy copies (population variance)",
        source="Adebayo, Gilmer, Goodfellow, Kim 2018, arXiv 1810.03307; " + _HOOKER)
def vargrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, n_samples: int = 25,
            noise_level: float = 0.15, seed: int = 0, index: torch.Tensor | None = None,
            max_images: int = 1024) -> torch.Tensor:
    mean, mean_sq = noise_moments(model, x, target, n_samples=n_samples, noise_level=noise_level,
                                  seed=seed, index=index, max_images=max_images)
    return (mean_sq - mean * mean).clamp(min=0)
