"""Perturbation curves: perturb an image in the order an attribution map gives, track the model's
score for the originally predicted class, and summarise the curve by an area.

Shared by the four perturbation metrics (``aopc``, ``pixelflip``, ``insdel``, ``selectivity``):

* :func:`class_scores` -- ``f(x)``: the logit (``score="logit"``) or softmax probability
  (``score="prob"``) of a fixed target class per image, no gradient.
* :func:`score_curves` -- the curve ``f(x^(k))`` for ``k = 0..n_steps`` of every image, the images
  perturbed region by region (:func:`steps`: the order of ``kernels.perturbation.region_order``,
  the semantics of ``perturbation_steps``; one working batch modified in place; each step costs one
  forward pass plus a copy of the pixels it changes).
* :func:`make_fill` -- the replacement values: ``"uniform"`` noise in [0, 1] (Samek et al. 2017,
  seeded per (seed, image index)), a ``"constant"`` (scalar or per-channel), or ``"blur"`` (a
  Gaussian blur of the image, the RISE insertion substrate).
* Areas, two conventions, both tested on known curves:

  - :func:`aopc` is a **mean over the L+1 points** (Samek et al. 2017):
    ``AOPC = 1/(L+1) * sum_{k=0..L} (f(x^(0)) - f(x^(k)))``. A score that falls by 1/L per step
    from 1 gives exactly ``1/(L+1) * sum_k k/L = 1/2``.
  - :func:`trapezoid_area` is the **trapezoid rule over the perturbed fraction** in [0, 1]
    (RISE's ``auc``; pixel flipping; selectivity). On the same linear curve over the full image it
    is ``1/2`` too; in general they differ in the end-point weights: on L steps of a uniform grid
    trapezoid = (sum_k y_k - (y_0 + y_L)/2) / L while the mean is sum_k y_k / (L+1).

The case harness is shared too: :func:`evaluate` runs a metric's :class:`CurveProtocol` for the
case's method and the ``random`` control per seed (attributions and curves cached), compares them
by the shared verdict (``suite.metrics.verdict``); :func:`conclude` turns that into the case's
``suite.contract.CaseResult`` (curves, details, a figure of the perturbed images, the checks the
method's role asks for: ``suite.roles``).
"""
from __future__ import annotations

import dataclasses

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernels.perturbation import region_order, uniform_fill
from suite.methods.extract import fingerprint, result_spec

SCORES = ("logit", "prob")
FILLS = ("uniform", "constant", "blur")


# -- the score function -------------------------------------------------------------------------

def class_scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor, score: str = "logit") -> torch.Tensor:
    """``f(x)``: the ``score`` ("logit" or "prob" = softmax) of class ``target[i]`` for image i."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    with torch.inference_mode():
        out = model(x)
        if score == "prob":
            out = torch.softmax(out, dim=1)
        return out.gather(1, target.reshape(-1, 1).to(out.device))[:, 0]


def region_size(side: int) -> int:
    """Default region side r for an image side: 9 at ImageNet size (Samek et al. 2017), else
    ``side // 8`` clamped to [2, 9]: 2 for 16x16 digits, 3 for 28x28, 4 for 32x32."""
    return int(max(2, min(9, side // 8)))


# -- fills ----------------------------------------------------------------------------------------

def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur per channel (kernel radius ceil(3 sigma), reflect padding)."""
    if sigma <= 0:
        return np.array(x, dtype=np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n, c, h, w = t.shape
    rad = int(math.ceil(3 * sigma))
    rad = min(rad, h - 1, w - 1)
    k = torch.exp(-0.5 * (torch.arange(-rad, rad + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(t.reshape(n * c, 1, h, w), (rad, rad, rad, rad), mode="reflect")
    y = F.conv2d(y, k.reshape(1, 1, 1, -1))
    y = F.conv2d(y, k.reshape(1, 1, -1, 1))
    return y.reshape(n, c, h, w).numpy()


def make_fill(kind: str, images: np.ndarray, *, seed: int = 0, ids: np.ndarray | None = None,
              value: float | Sequence[float] = 0.0, sigma: float = 1.0) -> np.ndarray:
    """The replacement values, ``(N, C, H, W)`` float32, for ``kind`` in FILLS.

    "uniform": noise in [0, 1) drawn per (seed, image id) (``kernels.perturbation.uniform_fill``);
    "constant": ``value`` (scalar or per-channel); "blur": ``gaussian_blur(images, sigma)``.
    """
    if kind not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {kind!r}")
    if kind == "uniform":
        return uniform_fill(images.shape, 0.0, 1.0, seed=seed, ids=ids, dtype=images.dtype)
    if kind == "blur":
        return gaussian_blur(images, sigma).astype(images.dtype)
    v = np.asarray(value, dtype=images.dtype)
    if v.ndim == 1:
        v = v[None, :, None, None]
    return np.ascontiguousarray(np.broadcast_to(v, images.shape))


# -- curves ----------------------------------------------------------------------------------------

def score_curves(model: nn.Module, images: np.ndarray, attributions: np.ndarray, target: torch.Tensor, *,
                 r: int, fill: np.ndarray | float, order: str = "morf", mode: str = "deletion",
                 regions_per_step: int = 1, n_steps: int | None = None, score: str = "logit",
                 device: str | torch.device = "cpu", batch_size: int = 256) -> np.ndarray:
    """``(N, n_steps + 1)`` float64: ``f(x^(k))`` of every image for k = 0..n_steps.

    ``images`` (N, C, H, W) float32 numpy; ``attributions`` (N, H, W) or (N, 1, H, W) (channels
    already pooled); ``fill``: deletion values or, for ``mode="insertion"``, the substrate (see
    ``kernels.perturbation.perturbation_steps``). Images go through in chunks of ``batch_size``.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    a = np.asarray(attributions)
    a = a[:, 0] if a.ndim == 4 else a
    n = images.shape[0]
    fill_arr = np.asarray(fill, dtype=np.float32)
    full_fill = fill_arr.ndim == 4
    target = torch.as_tensor(target).long().reshape(-1)
    device = torch.device(device)
    return _curves(model, images, a, fill_arr, full_fill, target, device, r, order, mode, regions_per_step,
                   n_steps, score, batch_size)


def step_map(attributions: np.ndarray, r: int, order: str, regions_per_step: int) -> np.ndarray:
    """(N, 1, H, W) int32: the step (1-based) at which each pixel is perturbed, from
    ``kernels.perturbation.region_order`` (its tie rule: exact ties in the seeded random order of
    (``kernels.ranking.TIE_SEED``, row = image index), the same for every method)."""
    a = np.asarray(attributions)
    a = a[:, 0] if a.ndim == 4 else a
    n, h, w = a.shape
    o = region_order(a, r, order)
    rank = np.empty_like(o)
    np.put_along_axis(rank, o, np.broadcast_to(np.arange(o.shape[1]), o.shape), axis=1)
    nw = -(-w // r)
    rid = (np.arange(h)[:, None] // r) * nw + np.arange(w)[None, :] // r
    return (rank // regions_per_step + 1).astype(np.int32)[:, rid][:, None]


def steps(images: np.ndarray, attributions: np.ndarray, r: int, fill, *, order: str = "morf",
          mode: str = "deletion", regions_per_step: int = 1, n_steps: int | None = None):
    """Generator of (k, x_k), k = 0..n_steps, with the semantics of
    ``kernels.perturbation.perturbation_steps`` (tested equal to its reference) and, like it, one
    working buffer modified in place. Each step is a single-threaded masked copy: the kernel's
    parallel step (numba, OpenMP layer) costs ~10 ms a launch when 2 cores are shared, because
    its spinning worker threads compete with torch's (measured 20x on a smoke case). The pixels
    of each step are found once (a stable argsort of the step map), so a step touches only them."""
    if order not in ("morf", "lerf") or mode not in ("deletion", "insertion"):
        raise ValueError(f"order must be morf/lerf and mode deletion/insertion, got {order!r}, {mode!r}")
    x = np.ascontiguousarray(images)
    f = np.broadcast_to(np.asarray(fill, dtype=x.dtype).reshape(
        (1, -1, 1, 1) if np.ndim(fill) == 1 else np.shape(fill)), x.shape)
    smap = step_map(attributions, r, order, regions_per_step)
    last = int(smap.max())
    n_steps = last if n_steps is None else n_steps
    if not 0 <= n_steps <= last:
        raise ValueError(f"n_steps must be in [0, {last}], got {n_steps}")
    cur, source = (x.copy(), f) if mode == "deletion" else (np.array(f, dtype=x.dtype), x)
    n, c, h, w = x.shape
    flat = smap.reshape(-1)                       # (N*H*W,) step of each (image, pixel)
    by_step = np.argsort(flat, kind="stable")     # positions grouped by step
    bounds = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=last + 1)[1:])])
    cur3, src3 = cur.reshape(n, c, h * w), source.reshape(n, c, h * w)
    yield 0, cur
    for k in range(1, n_steps + 1):
        pos = by_step[bounds[k - 1]:bounds[k]]    # only the pixels this step changes
        i, j = pos // (h * w), pos % (h * w)
        cur3[i, :, j] = src3[i, :, j]
        yield k, cur


def _curves(model, images, a, fill_arr, full_fill, target, device, r, order, mode, regions_per_step,
            n_steps, score, batch_size) -> np.ndarray:
    n = images.shape[0]
    out: np.ndarray | None = None
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        f = fill_arr[s:e] if full_fill else fill_arr
        tb = target[s:e].to(device)
        cols = []
        for _, xk in steps(images[s:e], a[s:e], r, f, order=order, mode=mode,
                           regions_per_step=regions_per_step, n_steps=n_steps):
            cols.append(class_scores(model, torch.from_numpy(xk).to(device), tb, score))
        block = torch.stack(cols, dim=1).double().cpu().numpy()
        if out is None:
            out = np.empty((n, block.shape[1]), dtype=np.float64)
        out[s:e] = block
    assert out is not None
    return out


def perturbed_fractions(h: int, w: int, r: int, regions_per_step: int, n_steps: int) -> np.ndarray:
    """Fraction of the regions perturbed after each step k = 0..n_steps: ``min(R, k*g) / R``.

    It is the fraction of pixels when r divides H and W; with partial border tiles the pixel
    fraction depends on the image's order, and the region fraction is used as the abscissa."""
    n_regions = (-(-h // r)) * (-(-w // r))
    k = np.arange(n_steps + 1)
    return np.minimum(n_regions, k * regions_per_step) / n_regions


# -- areas -----------------------------------------------------------------------------------------

def aopc(curves: np.ndarray) -> np.ndarray:
    """Per-image AOPC: ``1/(L+1) * sum_{k=0..L} (f(x^(0)) - f(x^(k)))`` for (N, L+1) curves."""
    c = np.asarray(curves, dtype=np.float64)
    return (c[:, :1] - c).mean(axis=1)


def abpc(morf: np.ndarray, lerf: np.ndarray) -> np.ndarray:
    """Per-image area between the LeRF and MoRF curves, same normalisation as AOPC:
    ``1/(L+1) * sum_k (f_lerf(k) - f_morf(k)) = AOPC_morf - AOPC_lerf``."""
    return (np.asarray(lerf, np.float64) - np.asarray(morf, np.float64)).mean(axis=1)


def trapezoid_area(curves: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-image trapezoid area of (N, K) curves over the abscissa x (K,)."""
    c = np.asarray(curves, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    return ((c[:, 1:] + c[:, :-1]) * 0.5 * np.diff(x)[None]).sum(axis=1)


# -- the case harness ----------------------------------------------------------------------------

@dataclass
class SeedResult:
    """One seed of one metric: the case score, named curves (N, K) and extra per-image values."""

    score: float
    curves: dict[str, np.ndarray]
    values: dict[str, float] = field(default_factory=dict)
    snapshots: list[np.ndarray] | None = None     # perturbed versions of image 0, for the figure
    per_image: np.ndarray | None = None           # (N,) the score of each image (score = mean)


@dataclass
class Evaluation:
    """A case's comparison with random: the verdict, report curves, details and the figure."""

    verdict: Any
    curves: list[dict]
    details: dict
    figure: Any                 # a suite.contract.Picture, its caption set by conclude
    #: {"results": {method or "random": [SeedResult per seed]}, "n_models": int}: what a metric
    #: derives a second verdict from (insdel's deletion AUC); not recorded
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CurveProtocol:
    """What one perturbation metric runs per seed, and how its curves are labelled.

    ``run_seed(x, y_pred, seed=, masks=, method=, trained=)`` -> SeedResult, called for the case's
    method and for ``random`` per seed, ``trained`` the seed's base model
    (``suite.seeds.base_models``). ``curve_specs``: (key in SeedResult.curves, label) pairs.
    ``params`` (the metric's resolved settings) are part of the cached curves' key.
    """

    run_seed: Callable[..., SeedResult]
    higher_is_better: bool
    curve_specs: tuple[tuple[str, str], ...]
    x_axis: np.ndarray
    x_label: str
    y_label: str
    n_images: int
    params: dict
    figure_title: str


def first_test_images(dataset, n: int):
    """The first ``n`` test images (numpy float32), labels, masks (numpy bool or None), ids."""
    x, y, masks = dataset.split("test")
    n = min(n, len(x))
    return (x[:n].contiguous(), y[:n], None if masks is None else masks[:n], np.arange(n))


def method_map(ctx, trained, case, x: torch.Tensor, masks, seed: int, method: str | None = None) -> np.ndarray:
    """(N, H, W) channel-pooled map of ``method`` (default: the case's) for x, via the cache."""
    from suite.methods import aggregate, default_aggregation, extract_cached, method_params

    method = method or case.method
    attr, _ = extract_cached(ctx.cache, model_key=trained.key, model=trained.model, model_name=case.model,
                             method_name=method, x=x, split=f"test{len(x)}", masks=masks,
                             device=ctx.device, seed=seed, params=method_params(method, ctx.scale))
    return aggregate(attr, default_aggregation(method))[:, 0]


def curve_dict(label: str, x: np.ndarray, per_seed: list[np.ndarray], x_label: str, y_label: str) -> dict:
    """A report curve: the mean over images per seed, then mean (and std when > 1 seed) over seeds."""
    means = np.stack([c.mean(axis=0) for c in per_seed])
    return {"label": label, "x": [float(v) for v in x], "y": [float(v) for v in means.mean(axis=0)],
            "y_std": [float(v) for v in means.std(axis=0, ddof=1)] if len(means) > 1 else None,
            "x_label": x_label, "y_label": y_label}


#: bump when the meaning of a cached baseline curve changes (4: per-image scores kept; 3: seeded
#: tie order)
CURVES_VERSION = 4


def cached_seed(ctx, name: str, spec: dict, build: Callable[[], SeedResult]) -> SeedResult:
    """``build()`` through the artifact cache (kind "curves"): the random control's curves are the
    same in every case of a (metric, dataset, model, params, seed), so they are computed once."""
    from suite.cache import NPZ

    def to_arrays() -> dict[str, np.ndarray]:
        r = build()
        out = {"score": np.float64(r.score)}
        out.update({f"curve.{k}": v for k, v in r.curves.items()})
        out.update({f"value.{k}": np.float64(v) for k, v in r.values.items()})
        if r.snapshots:
            out["snapshots"] = np.stack(r.snapshots)
        if r.per_image is not None:
            out["per_image"] = np.asarray(r.per_image, dtype=np.float64)
        return out

    v = ctx.cache.fetch("curves", name, spec, to_arrays, codec=NPZ).value
    return SeedResult(float(v["score"]),
                      {k[6:]: v[k] for k in v if k.startswith("curve.")},
                      {k[6:]: float(v[k]) for k in v if k.startswith("value.")},
                      list(v["snapshots"]) if "snapshots" in v else None,
                      v["per_image"] if "per_image" in v else None)


def evaluate(case, dataset, trained, ctx, protocol: CurveProtocol) -> Evaluation:
    """Evaluate ``case`` for every seed of ``ctx`` against the ``random`` control.

    Per seed s: the base model of s (``suite.seeds.base_models``: the model trained with
    seed s, or the one given model), the maps on it and the metric's draws with seed s, and
    ``run_seed(..., trained=<that model>)``; the predicted classes are that model's. The verdict:
    ``verdict.paired_verdict`` over (seeds, images), by model when there are several models."""
    from suite.seeds import base_models
    from suite.metrics.verdict import paired_verdict
    from suite.methods import predict

    P = protocol
    x, _, masks, ids = first_test_images(dataset, P.n_images)
    pairs = base_models(ctx, dataset, trained, case.metric)
    n_models = len({tm.key for _, tm in pairs})
    t0 = time.perf_counter()
    res: dict[str, list[SeedResult]] = {name: [] for name in dict.fromkeys([case.method, "random"])}
    from suite.methods import method_params

    for seed, tm in pairs:
        target = predict(tm.model, x.to(ctx.device)).cpu()
        for name in res:
            # cached: the random control's curves are shared by every method's case, and a
            # re-run reads every curve instead of recomputing it (--rebuild recomputes). The key
            # holds the maps' fingerprint: a method whose output changed never reads old curves
            spec = result_spec(case.metric, CURVES_VERSION, model=tm.key, data=fingerprint(x),
                               method=name, maps=method_map(ctx, tm, case, x, masks, seed, name),
                               method_params=method_params(name, ctx.scale), params=P.params,
                               seed=seed)
            res[name].append(cached_seed(
                ctx, f"{case.metric}-{case.dataset}-{case.model}-{name}", spec,
                lambda name=name, seed=seed, tm=tm, target=target: P.run_seed(
                    x, target, seed=seed, masks=masks, method=name, trained=tm)))
    verdict = paired_verdict(np.stack([r.per_image for r in res[case.method]]),
                             np.stack([r.per_image for r in res["random"]]),
                             higher_is_better=P.higher_is_better,
                             seed_scores=[r.score for r in res[case.method]],
                             random_seed_scores=[r.score for r in res["random"]],
                             by_model=n_models > 1)
    curves = []
    for who in dict.fromkeys([case.method, "random"]):
        for key, label in P.curve_specs:
            curves.append(curve_dict(f"{who} {label}", P.x_axis, [r.curves[key] for r in res[who]],
                                     P.x_label, P.y_label))
    details = {"params": P.params, "n_images": int(len(x)), "seeds": list(ctx.seeds),
               "n_models": n_models, "base_models": list(dict.fromkeys(tm.key for _, tm in pairs)),
               "per_seed": {who: [r.score for r in rs] for who, rs in res.items()},
               "values": {who: {k: float(np.mean([r.values[k] for r in rs])) for k in rs[0].values}
                          for who, rs in res.items()},
               "per_seed_values": {who: {k: [r.values[k] for r in rs] for k in rs[0].values}
                                   for who, rs in res.items()},
               "seconds": round(time.perf_counter() - t0, 3),
               # each image's score (mean over the seeds: their models, or the noise draws of
               # one model): the units of the run's aggregate-rank interval (suite.families)
               "per_image": [float(v) for v in np.mean([r.per_image for r in res[case.method]],
                                                       axis=0)]}
    # the case's own row only: the random baseline's row was the same in every method's picture
    # (the report stacks a group's pictures, random's among them: 15 copies of one row on the page)
    from suite.contract import Picture

    fig = Picture.drawn("", snapshot_figure, {case.method: res[case.method][0].snapshots}
                        if res[case.method][0].snapshots else {}, P.figure_title)
    return Evaluation(verdict, curves, details, fig, {"results": res, "n_models": n_models})


def snapshot_steps(n_steps: int, n_shots: int = 4) -> list[int]:
    """``n_shots`` step indices from 0 to n_steps, evenly spaced (for the figure)."""
    return sorted({int(round(v)) for v in np.linspace(0, n_steps, n_shots)})


def snapshots(images: np.ndarray, attributions: np.ndarray, *, r: int, fill, order: str, mode: str,
              regions_per_step: int, n_steps: int) -> list[np.ndarray]:
    """Copies of image 0 at :func:`snapshot_steps` of its perturbation (for the figure)."""
    want = set(snapshot_steps(n_steps))
    a = np.asarray(attributions)
    a = a[:1, 0] if a.ndim == 4 else a[:1]
    f = np.asarray(fill, dtype=np.float32)
    f = f[:1] if f.ndim == 4 else f
    out = []
    for k, xk in steps(np.ascontiguousarray(images[:1], dtype=np.float32), a, r, f, order=order,
                       mode=mode, regions_per_step=regions_per_step, n_steps=n_steps):
        if k in want:
            out.append(xk[0].copy())
    return out


def snapshot_figure(shots: dict[str, list[np.ndarray]], title: str):
    """Rows: methods; columns: image 0 after the snapshot steps."""
    from matplotlib.figure import Figure

    rows = list(shots)
    cols = max((len(v) for v in shots.values()), default=1)
    fig = Figure(figsize=(1.5 * cols + 0.5, 1.5 * max(1, len(rows))), layout="constrained")
    axes = fig.subplots(max(1, len(rows)), cols, squeeze=False)
    for i, who in enumerate(rows):
        for j, img in enumerate(shots[who]):
            ax = axes[i, j]
            im = np.clip(img.transpose(1, 2, 0), 0, 1)
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(who, fontsize=8)
    fig.suptitle(title, fontsize=8)
    return fig


def conclude(case, ev: Evaluation, *, picture: str, what: str):
    """The case's ``CaseResult``: score, baseline, verdict, curves, details and the figure
    (captioned ``picture``); "beats random" asserted as the method's role asks (``suite.roles``).
    The ``random`` case is the baseline itself: its beats_baseline is left empty (None)."""
    from suite.contract import CaseResult
    from suite.metrics.verdict import conclude as conclude_verdict

    figures = [dataclasses.replace(ev.figure, title=picture)]
    if case.method == "random":
        v = ev.verdict
        return CaseResult(score=v.score, higher_is_better=v.higher_is_better,
                          baseline={"method": "random", "score": v.baseline}, curves=ev.curves,
                          details={**ev.details, "note": "the random control is the baseline itself"},
                          figures=figures)
    return conclude_verdict(case, ev.verdict, curves=ev.curves, details=ev.details, figures=figures,
                            what=what)
