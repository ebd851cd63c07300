"""Selectivity (Montavon, Samek, Mueller 2018, Digital Signal Processing, "Methods for interpreting
and understanding deep neural networks", arXiv 1706.07979).

At each step the attribution is **recomputed** on the current (already modified) images, batched
over images; per image, the r x r patch with the largest summed relevance among the patches not
yet removed is set to the baseline (``baseline``: the per-channel training-set mean by default;
exact ties go to a seeded random patch, the one ``kernels.perturbation.top_region`` picks, as in
the MoRF order of ``kernels.perturbation``); then the
class score ``f`` (``score="logit"`` by default, or "prob") of the originally predicted class is
evaluated. The case score is the trapezoid area of the score curve over the removed fraction of
the image: lower is better. Relative to the ``random`` method (whose map does not depend on the
image, so its "recomputed" order is one fixed random order).

Controls recompute trivially: ``random`` gives the same map, ``sobel`` the edges of the modified
image, ``oracle`` the ground-truth mask minus the removed patches.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from kernels.perturbation import region_sums, top_region
from suite.metrics import perturbation as pt
from suite.metrics.aopc import SMOKE_METHODS
from suite.registry import MetricSpec, register_metric
from suite.specs import REAL_DATASETS

METRIC = register_metric(MetricSpec(
    "selectivity", description="selectivity (Montavon et al. 2018): remove the most relevant patch, "
    "recompute the attribution, repeat; area under the class-score curve (lower is better), "
    "relative to a random order",
    higher_is_better=False,
    source='Montavon, Samek, Mueller 2018, Digital Signal Processing 73, arXiv 1706.07979',
    score="area under the class-score curve as the most relevant patch is removed and the map "
          "recomputed, step by step, mean over images (lower is better)",
    datasets={"smoke": ("digits", "shapes"), "small": ("digits", "shapes") + REAL_DATASETS},
    models={"smoke": ("simplecnn",), "small": ("simplecnn",)},
    methods={"smoke": SMOKE_METHODS,
             "small": ("random", "sobel", "oracle", "gradient", "intgrad", "guidedbp", "gradcam",
                       "lrp_e0p01", "sens_l2", "deconv_l2")}))

#: per scale: images, steps (patches removed), score; r = region_size(image side): 2 for 16x16, 4 for 32x32
PARAMS = {"smoke": {"n_images": 64, "n_steps": 8, "score": "logit"},
          "small": {"n_images": 128, "n_steps": 16, "score": "logit"},
          "paper": {"n_images": 256, "n_steps": 64, "score": "logit"}}

#: attribute(x (N,C,H,W) tensor, target (N,), removed (N,1,H,W) bool numpy, rows (N,) int) -> (N,H,W)
Attribute = Callable[[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray], np.ndarray]


def selectivity(model: nn.Module, images: np.ndarray, target: torch.Tensor, attribute: Attribute, *, r: int,
                n_steps: int, baseline, score: str = "logit", device: str = "cpu", batch_size: int = 256,
                keep: tuple[int, ...] = (), with_hits: bool = False):
    """(curves (N, n_steps+1), fractions (n_steps+1,), {step: image 0 at that step for steps in keep}),
    and with ``with_hits`` a fourth array (N, n_steps+1): 1.0 where the model still predicts the
    target class at that step (its mean over images is the accuracy curve).

    ``attribute`` is called once per step per chunk of ``batch_size`` images, on the current images;
    ``rows`` are the chunk's row numbers in ``images`` (for per-image seeds and masks).
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    nh, nw = -(-h // r), -(-w // r)
    n_regions = nh * nw
    if not 0 <= n_steps <= n_regions:
        raise ValueError(f"n_steps must be in [0, {n_regions}] ({n_regions} patches of {r}x{r}), got {n_steps}")
    rid = (np.arange(h)[:, None] // r) * nw + np.arange(w)[None, :] // r
    base = pt.make_fill("constant", images, value=baseline) if np.ndim(baseline) < 4 else \
        np.ascontiguousarray(baseline, dtype=np.float32)
    target = torch.as_tensor(target).long().reshape(-1)
    device = torch.device(device)
    curves = np.empty((n, n_steps + 1))
    hits = np.empty((n, n_steps + 1))
    shots: dict[int, np.ndarray] = {}
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        cur = images[s:e].copy()
        tb = target[s:e].to(device)
        rows = np.arange(s, e)
        removed = np.zeros((e - s, n_regions), dtype=bool)
        ar = np.arange(e - s)

        def f(k: int) -> np.ndarray:
            xb = torch.from_numpy(cur).to(device)
            if with_hits:
                with torch.no_grad():
                    hits[s:e, k] = (model(xb).argmax(1) == tb).double().cpu().numpy()
            return pt.class_scores(model, xb, tb, score).double().cpu().numpy()

        curves[s:e, 0] = f(0)
        if s == 0 and 0 in keep:
            shots[0] = cur[0].copy()
        for k in range(1, n_steps + 1):
            a = attribute(torch.from_numpy(cur).to(device), tb, removed[:, rid][:, None], rows)
            sums = region_sums(a, r).reshape(e - s, n_regions)
            sums[removed] = -np.inf
            g = top_region(sums, ids=rows)        # exact ties: seeded random per image
            removed[ar, g] = True
            np.copyto(cur, base[s:e], where=(rid[None] == g[:, None, None])[:, None])
            curves[s:e, k] = f(k)
            if s == 0 and k in keep:
                shots[k] = cur[0].copy()
    frac = np.minimum(n_regions, np.arange(n_steps + 1)) / n_regions
    return (curves, frac, shots, hits) if with_hits else (curves, frac, shots)


def method_attributor(method: str, model: nn.Module, model_name: str, *, scale: str, seed: int,
                      masks: np.ndarray | None = None) -> Attribute:
    """The checked ``suite.methods.explain`` of ``method`` as an ``Attribute``, channel-pooled with
    the method's default aggregation; seeded methods get image ids = rows; the oracle gets the
    mask minus the removed patches."""
    from suite.methods import aggregate, default_aggregation, explain, method_params
    from suite.methods.base import get, takes
    from suite.methods.extract import resolve_params

    spec = get(method)
    params = resolve_params(method, model_name, method_params(method, scale), seed)
    how = default_aggregation(method)
    with_index = takes(spec.explain, "index")

    def attribute(x, target, removed, rows):
        extra = {}
        if with_index:
            extra["index"] = torch.as_tensor(rows)
        if spec.needs_mask:
            extra["mask"] = torch.from_numpy(np.asarray(masks)[rows] & ~removed)
        a = explain(method, model, x, target, model_name=model_name, **params, **extra)
        return aggregate(a, how)[:, 0].cpu().numpy()

    return attribute


def evaluate_case(case, dataset, trained, ctx, **overrides):
    """The case's ``suite.contract.CaseResult`` (``overrides``: settings over the scale's)."""
    p = {**PARAMS[ctx.scale], **overrides}
    h, w = dataset.in_shape[1:]
    r = p.get("r") or pt.region_size(min(h, w))
    n_regions = (-(-h // r)) * (-(-w // r))
    steps = min(p["n_steps"], n_regions)
    baseline = [float(v) for v in dataset.channel_mean]
    # "accuracy": the seeds' cached curves hold the accuracy curve too (part of their cache key)
    p = {**p, "r": r, "n_steps": steps, "baseline": baseline, "accuracy": True}
    keep = tuple(pt.snapshot_steps(steps))

    def run_seed(x, target, *, seed, masks, method, trained=trained):
        m = None if masks is None else masks.numpy().astype(bool)
        attribute = method_attributor(method, trained.model, case.model, scale=ctx.scale, seed=seed, masks=m)
        curves, frac, shots, hits = selectivity(
            trained.model, x.numpy(), target, attribute, r=r, n_steps=steps,
            baseline=np.asarray(baseline, np.float32), score=p["score"], device=ctx.device,
            keep=keep, with_hits=True)
        area = pt.trapezoid_area(curves, frac)
        return pt.SeedResult(float(area.mean()), {"sel": curves, "acc": hits},
                             {"area": float(area.mean()), "accuracy_area": float(
                                 pt.trapezoid_area(hits, frac).mean())},
                             [shots[k] for k in keep] if seed == ctx.seeds[0] else None, area)

    frac = np.arange(steps + 1) / n_regions
    result = pt.evaluate(case, dataset, trained, ctx, pt.CurveProtocol(
        run_seed, higher_is_better=False,
                         curve_specs=(("sel", "selectivity"), ("acc", "accuracy")), x_axis=frac,
                         x_label="fraction of patches removed",
                         y_label=f"class {p['score']} (accuracy: fraction still predicted)",
                         n_images=p["n_images"], params=p,
                         figure_title=f"selectivity ({r}x{r} patches to the channel mean, maps "
                                      "recomputed)"))
    # the accuracy curve beside the class score: the fraction of images still classified as their
    # originally predicted class after each removal (mean over seeds), the method's and random's
    result.details["accuracy_curve"] = {
        "x": [float(v) for v in frac],
        "y": {c["label"][:-len(" accuracy")]: c["y"] for c in result.curves
              if c["label"].endswith(" accuracy")},
        "y_label": "accuracy w.r.t. the originally predicted class"}
    return pt.conclude(case, result, what=" (selectivity area)",
                       picture=f"{case.id}: image 0 as patches are removed ({case.method})")
