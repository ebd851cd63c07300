"""Region perturbation and AOPC (Samek, Binder, Montavon, Lapuschkin, Mueller 2017, IEEE TNNLS,
arXiv 1509.06321).

Non-overlapping r x r regions are ordered by their summed (channel-pooled) relevance; step k
replaces the k-th region by uniform noise in [0, 1] (``fill="uniform"``, the paper's; "constant"
and "blur" are options); L steps. ``f`` is the score of the originally predicted class:
``score="logit"`` (default; the paper's classifier output) or ``"prob"`` (softmax).

    AOPC = 1/(L+1) * < sum_{k=0..L} f(x^(0)) - f(x^(k)) >       (MoRF order; higher is better)
    ABPC = 1/(L+1) * < sum_{k=0..L} f_LeRF(x^(k)) - f_MoRF(x^(k)) > = AOPC_MoRF - AOPC_LeRF

The case score is the MoRF AOPC, compared with the ``random`` method's map (a seeded random
order). ABPC of the method and of random are in the case details.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from suite.metrics import perturbation as pt
from suite.metrics.expectations import expect_failure
from suite.registry import MetricSpec, register_metric
from suite.specs import REAL_DATASETS

SMOKE_METHODS = ("random", "sobel", "oracle", "gradient", "intgrad", "guidedbp", "lrp_e0p01", "gradcam")
SAMEK_METHODS = ("sens_l2", "sens_linf", "deconv_l2", "deconv_linf", "lrp_e0p01", "lrp_e100")

METRIC = register_metric(MetricSpec(
    "aopc", description="region perturbation (Samek et al. 2017): AOPC of the MoRF curve (higher "
    "is better), ABPC between LeRF and MoRF in the details; relative to a random order",
    higher_is_better=True,
    source='Samek, Binder, Montavon, Lapuschkin, Mueller 2017, IEEE TNNLS, arXiv 1509.06321',
    score="AOPC of the MoRF region-perturbation curve: the mean drop of the class score as the "
          "most relevant regions are replaced, mean over images (higher is better)",
    datasets={"smoke": ("digits", "shapes"), "small": ("digits", "shapes") + REAL_DATASETS},
    models={"smoke": ("simplecnn",), "small": ("simplecnn",)},
    methods={"smoke": SMOKE_METHODS,
             "small": ("random", "sobel", "oracle", "gradient", "intgrad", "guidedbp", "gradcam",
                       "smoothgrad") + SAMEK_METHODS}))

#: per scale: images, steps L, score, fill (r is region_size(image side)); paper: the 1000 images
#: and 100 steps of the Samek et al. replication (pretrained AlexNet on Imagenette at 224 px)
PARAMS = {"smoke": {"n_images": 64, "n_steps": 16, "score": "logit", "fill": "uniform"},
          "small": {"n_images": 128, "n_steps": 32, "score": "logit", "fill": "uniform"},
          "paper": {"n_images": 1000, "n_steps": 100, "score": "logit", "fill": "uniform"}}
#: paper scale: 1,000 images, as the replication of Samek et al. (the paper: 5,040)


def aopc_steps(curve: np.ndarray) -> np.ndarray:
    """AOPC after every number of steps L = 0..K-1 of score curves (N, K) or a mean curve (K,):
    ``AOPC(L) = 1/(L+1) * sum_{k=0..L} (f(x^(0)) - f(x^(k)))``, averaged over images. Linear in
    the curve, so the AOPC of the mean curve is the mean of the per-image AOPCs."""
    c = np.asarray(curve, dtype=np.float64)
    c = c.mean(axis=0) if c.ndim == 2 else c
    return np.cumsum(c[0] - c) / np.arange(1, len(c) + 1)


def relative_aopc(morf: np.ndarray, random_morf: np.ndarray) -> np.ndarray:
    """Samek et al.'s Fig. 4: AOPC_method(L) - AOPC_random(L) for every L (MoRF curves, (N, K) or
    mean (K,)); exactly 0 at every step for the random order itself."""
    a, b = aopc_steps(morf), aopc_steps(random_morf)
    if a.shape != b.shape:
        raise ValueError(f"relative_aopc: curves of {a.shape[0]} and {b.shape[0]} steps")
    return a - b


@dataclass(frozen=True)
class RegionPerturbation:
    """MoRF and LeRF curves (N, L+1) and the per-image AOPC / ABPC."""

    morf: np.ndarray
    lerf: np.ndarray

    @property
    def aopc_morf(self) -> np.ndarray:
        return pt.aopc(self.morf)

    @property
    def aopc_lerf(self) -> np.ndarray:
        return pt.aopc(self.lerf)

    @property
    def abpc(self) -> np.ndarray:
        return pt.abpc(self.morf, self.lerf)


def region_perturbation(model: nn.Module, images: np.ndarray, attributions: np.ndarray, target: torch.Tensor, *,
                        r: int, n_steps: int, fill: np.ndarray | float, score: str = "logit",
                        device: str = "cpu", batch_size: int = 256, lerf: bool = True) -> RegionPerturbation:
    """MoRF (and LeRF unless ``lerf=False``) curves of ``L = n_steps`` region perturbations.

    ``fill``: the replacement values, e.g. ``pt.make_fill("uniform", images, seed=...)``.
    """
    kw = dict(r=r, fill=fill, n_steps=n_steps, score=score, device=device, batch_size=batch_size)
    morf = pt.score_curves(model, images, attributions, target, order="morf", **kw)
    lc = pt.score_curves(model, images, attributions, target, order="lerf", **kw) if lerf else np.full_like(morf, np.nan)
    return RegionPerturbation(morf, lc)


def evaluate_case(case, dataset, trained, ctx, **overrides):
    """The case's ``suite.contract.CaseResult`` (``overrides``: settings over the scale's)."""
    p = {**PARAMS[ctx.scale], **overrides}
    side = min(dataset.in_shape[1:])
    r = p.get("r") or pt.region_size(side)
    n_regions = (-(-dataset.in_shape[1] // r)) * (-(-dataset.in_shape[2] // r))
    L = min(p["n_steps"], n_regions)
    p = {**p, "r": r, "n_steps": L}

    def run_seed(x, target, *, seed, masks, method, trained=trained):
        imgs = x.numpy()
        a = pt.method_map(ctx, trained, case, x, masks, seed, method)
        fill = pt.make_fill(p["fill"], imgs, seed=seed, value=p.get("value", 0.0), sigma=p.get("sigma", 1.0))
        rp = region_perturbation(trained.model, imgs, a, target, r=r, n_steps=L, fill=fill,
                                 score=p["score"], device=ctx.device)
        shots = pt.snapshots(imgs, a, r=r, fill=fill, order="morf", mode="deletion",
                             regions_per_step=1, n_steps=L) if seed == ctx.seeds[0] else None
        return pt.SeedResult(float(rp.aopc_morf.mean()), {"morf": rp.morf, "lerf": rp.lerf},
                             {"aopc_morf": float(rp.aopc_morf.mean()), "aopc_lerf": float(rp.aopc_lerf.mean()),
                              "abpc": float(rp.abpc.mean())}, shots, rp.aopc_morf)

    result = pt.evaluate(case, dataset, trained, ctx, pt.CurveProtocol(
        run_seed, higher_is_better=True,
                         curve_specs=(("morf", "MoRF"), ("lerf", "LeRF")), x_axis=np.arange(L + 1),
                         x_label="perturbation step k", y_label=f"class {p['score']}",
                         n_images=p["n_images"], params=p,
                         figure_title=f"region perturbation (MoRF, {r}x{r} regions, {p['fill']} fill)"))
    mean = {c["label"]: np.asarray(c["y"]) for c in result.curves}
    rel = relative_aopc(mean[f"{case.method} MoRF"], mean["random MoRF"])
    result.details["relative_aopc"] = {
        "L": list(range(L + 1)), "relative": [float(v) for v in rel],
        "aopc": [float(v) for v in aopc_steps(mean[f"{case.method} MoRF"])],
        "aopc_random": [float(v) for v in aopc_steps(mean["random MoRF"])],
        "note": "AOPC_method(L) - AOPC_random(L), MoRF, mean over seeds (Samek et al. 2017, Fig. 4)"}
    return pt.conclude(case, result, what=" (AOPC, MoRF)",
                       picture=f"{case.id}: image 0 after MoRF steps ({case.method})")


#: a measured finding, not a published one (the source says so): the paired per-image verdict
#: (suite.metrics.verdict) cannot tell this method from random at this sample size
expect_failure("aopc", "gradcam", datasets="digits", reason="Grad-CAM's AOPC on digits (8x8 images, a 2x2 feature map) is not shown to beat random on the smoke scale's 64 images: paired difference +0.55, 95% interval [-0.22, 1.25], one-sided p 0.078",
               source="measured by this suite, not published: FINDINGS.md, 'Verdicts the paired "
                      "per-image test changed' (smoke scale, seed 0; passed under the old 2% "
                      "margin rule)")
