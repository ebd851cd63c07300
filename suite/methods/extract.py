"""Whole-dataset attribution extraction, batched, on a chosen device, optionally cached.

``extract`` walks the images in batches of ``batch_size`` (the memory footprint is one batch on
the device plus the float32 result on the host), computes the target per batch (the model's
predicted class by default, as in ROAR, or the true label), runs the method through the checked
``suite.methods.explain`` and returns the raw map, float32, (N, C or 1, H, W). Raw, not
aggregated: ROAR ranks per element as well as per pixel, so metrics pool with
``aggregate(attr, default_aggregation(method))`` themselves.

Image i of ``x`` has index i: seeded methods (random, the SmoothGrad family) derive image i's
randomness from (seed, i), so results do not depend on ``batch_size``.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from suite.methods.base import (METHODS_VERSION, NotApplicableError, applies, eval_mode,
                                explain, get, method_params, takes)

log = logging.getLogger("saliencybench")

TARGETS = ("predicted", "label")
Progress = Callable[[int, int], None]


def fingerprint(t: torch.Tensor | np.ndarray) -> str:
    """sha256 (first 20 hex digits) of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    return h.hexdigest()[:20]


def result_spec(metric: str, version: int, *, model: str, data: str, method: str | None,
                maps: np.ndarray | torch.Tensor | None = None, **extra: Any) -> dict:
    """The cache key of a metric's result, the same shape for every metric.

    A result depends on: the metric and its version (bump ``version`` when the metric's meaning
    changes), the model (its artifact key), the images (``data``: a fingerprint), the method and
    ``METHODS_VERSION``, the maps the result was computed from (their fingerprint: a changed
    method output changes the key even when nobody bumped a version) and ``extra`` (the
    metric's parameters, seed, ...). ``maps`` may be None only where the result computes its
    maps itself from everything above (the sanity checks' randomized models).
    """
    return {"metric": metric, "metric_version": int(version), "methods_version": METHODS_VERSION,
            "model": model, "data": data, "method": method,
            "maps": None if maps is None else fingerprint(maps), **extra}


def resolve_params(method_name: str, model_name: str, params: dict | None, seed: int) -> dict:
    """Registered defaults, overridden by ``params``; ``seed`` for seeded methods; the model's
    Grad-CAM layer for ``needs_layer`` methods. What is returned is what goes into cache keys."""
    spec = get(method_name)
    full = dict(spec.params)
    unknown = set(params or {}) - set(full)
    if unknown:
        raise ValueError(f"method {method_name!r} has no parameter(s) {sorted(unknown)}; "
                         f"its parameters: {sorted(full)}")
    full.update(params or {})
    if "seed" in full:
        if params and "seed" in params and params["seed"] != seed:
            raise ValueError(f"seed given twice: params['seed']={params['seed']} and seed={seed}")
        full["seed"] = int(seed)
    if spec.needs_layer and full.get("layer") is None:
        from suite.registry import MODELS

        layer = MODELS[model_name].gradcam_layer if model_name in MODELS else None
        if layer is None:
            raise NotApplicableError(f"{method_name} needs a convolutional layer and model "
                                     f"{model_name!r} declares none")
        full["layer"] = layer
    full.pop("mask", None)   # data, passed per batch, never a parameter
    return full


@contextlib.contextmanager
def _on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Run on ``device``; a model found elsewhere is moved there and moved back afterwards."""
    first = next(iter(model.parameters()), None)
    home = first.device if first is not None else device
    if home != device:
        model.to(device)
    try:
        yield model
    finally:
        if home != device:
            model.to(home)


def extract(model: nn.Module, model_name: str, method_name: str, x: torch.Tensor, *,
            labels: torch.Tensor | None = None, masks: torch.Tensor | None = None,
            target: str = "predicted", batch_size: int = 64, device: str | torch.device = "cpu",
            seed: int = 0, params: dict[str, Any] | None = None,
            progress: Progress | None = None) -> np.ndarray:
    """Attributions of ``method_name`` for every image of ``x`` (N, C, H, W), float32 numpy.

    ``target``: "predicted" (the model's class, default) or "label" (needs ``labels``).
    ``masks`` (N, [1,] H, W) are required by ``needs_mask`` methods (the oracle) and ignored by
    the others. ``params`` override the method's registered defaults (see ``method_params``).
    Logs progress to the "saliencybench" logger every ~10% or 5 s and calls
    ``progress(done, total)`` after each batch.
    """
    spec = get(method_name)
    if target not in TARGETS:
        raise ValueError(f"target {target!r}; allowed: {', '.join(TARGETS)}")
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = x.shape[0]
    uses_target = not spec.is_control
    if uses_target and target == "label" and (labels is None or len(labels) != n):
        raise ValueError(f"target='label' needs labels for all {n} images")
    if spec.needs_mask and (masks is None or len(masks) != n):
        raise ValueError(f"method {method_name!r} needs ground-truth masks for all {n} images")
    full = resolve_params(method_name, model_name, params, seed)
    reason = applies(method_name, model_name, model)
    if reason is not None:
        raise NotApplicableError(reason)
    with_index = takes(spec.explain, "index")
    device = torch.device(device)

    out: np.ndarray | None = None
    t0 = last_log = time.perf_counter()
    next_pct = 10
    with _on_device(model, device), eval_mode(model):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            xb = x[start:stop].to(device)
            if not uses_target:
                tb = torch.zeros(stop - start, dtype=torch.long, device=device)
            elif target == "label":
                tb = labels[start:stop].to(device)
            else:
                tb = predict(model, xb)
            extra: dict[str, Any] = {}
            if with_index:
                extra["index"] = torch.arange(start, stop)
            if spec.needs_mask:
                extra["mask"] = masks[start:stop]
            attr = explain(method_name, model, xb, tb, model_name=model_name, **full, **extra)
            a = attr.detach().to("cpu", torch.float32).numpy()
            if out is None:
                out = np.empty((n,) + a.shape[1:], dtype=np.float32)
            out[start:stop] = a
            if progress is not None:
                progress(stop, n)
            now = time.perf_counter()
            pct = 100 * stop // n
            if stop == n or pct >= next_pct or now - last_log >= 5.0:
                log.info("attributions %s on %s: %d/%d images (%d%%), %.1fs", method_name,
                         model_name, stop, n, pct, now - t0)
                last_log = now
                next_pct = (pct // 10 + 1) * 10
    if out is None:
        raise ValueError("x holds no images")
    return out


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's predicted class (eval mode, no gradient); the module modes are restored."""
    with torch.no_grad(), eval_mode(model):
        return model(x).argmax(dim=1)


def extract_cached(cache, *, model_key: str, model: nn.Module, model_name: str, method_name: str,
                   x: torch.Tensor, split: str, labels: torch.Tensor | None = None,
                   masks: torch.Tensor | None = None, target: str = "predicted",
                   batch_size: int = 64, device: str | torch.device = "cpu", seed: int = 0,
                   params: dict[str, Any] | None = None,
                   progress: Progress | None = None) -> tuple[np.ndarray, bool]:
    """``extract`` through ``cache`` (a ``suite.cache.ArtifactCache``): (attributions, from_cache).

    Key: the trained model's artifact key, the computation (aliases such as ``sens_l2`` share
    ``gradient``'s entry: same raw map), the resolved parameters, target, split and fingerprints
    of the images (and of the labels / masks when they are used). Not in the key: batch size and
    device, which do not change the result beyond float rounding.
    """
    from suite.cache import NPZ

    name, key = attribution_artifact(model_key=model_key, model_name=model_name,
                                     method_name=method_name, x=x, split=split, labels=labels,
                                     masks=masks, target=target, seed=seed, params=params)

    def build() -> dict[str, np.ndarray]:
        return {"attributions": extract(model, model_name, method_name, x, labels=labels,
                                        masks=masks, target=target, batch_size=batch_size,
                                        device=device, seed=seed, params=params,
                                        progress=progress)}

    fetched = cache.fetch("attributions", name, key, build, codec=NPZ,
                          info=lambda v: {"shape": list(v["attributions"].shape)})
    return fetched.value["attributions"], fetched.from_cache


def attribution_artifact(*, model_key: str, model_name: str, method_name: str, x: torch.Tensor,
                         split: str, labels: torch.Tensor | None = None,
                         masks: torch.Tensor | None = None, target: str = "predicted",
                         seed: int = 0, params: dict[str, Any] | None = None,
                         fingerprints: dict | None = None) -> tuple[str, dict]:
    """(name, spec) of the "attributions" artifact ``extract_cached`` fetches, computed without
    extracting (``suite.plan``). ``fingerprints``: a dict the caller keeps for the same
    ``x`` / ``labels`` / ``masks`` tensors (filled here on first use), so a planner hashing one
    split for many methods hashes it once."""
    fps = fingerprints if fingerprints is not None else {}

    def fp(what: str, t):
        if what not in fps:
            fps[what] = fingerprint(t)
        return fps[what]

    spec = get(method_name)
    compute = spec.same_as or method_name
    full = resolve_params(method_name, model_name, params, seed)
    if target not in TARGETS:
        raise ValueError(f"target {target!r}; allowed: {', '.join(TARGETS)}")
    key = {"version": METHODS_VERSION, "model": model_key, "model_name": model_name,
           "method": compute, "params": full, "split": split, "data": fp("x", x),
           "target": None if spec.is_control else target}
    if target == "label" and not spec.is_control and labels is not None:
        key["labels"] = fp("labels", labels)
    if spec.needs_mask and masks is not None:
        key["masks"] = fp("masks", masks)
    return f"{model_name}-{compute}-{split}", key


def split_attributions(ctx, ds, trained, method: str, split: str,
                       seed: int | None = None) -> np.ndarray:
    """A case's cached raw maps of ``method`` for every image of ``split`` of ``ds`` (target: the
    predicted class; ``seed``, default the run's first seed; the method's parameters at the run's
    scale): the maps ROAR, KAR and ROAD rank inputs by (ROAD with base-model seeds: seed s on the
    model of seed s)."""
    x, y, masks = ds.split(split)
    a, _ = extract_cached(ctx.cache, model_key=trained.key, model=trained.model,
                          model_name=trained.model_name, method_name=method, x=x, split=split,
                          labels=y, masks=masks, target="predicted", device=ctx.device,
                          seed=ctx.seeds[0] if seed is None else int(seed),
                          params=method_params(method, ctx.scale))
    return a
