"""ROAD: Remove And Debias (Rong, Leemann, Borisov, Kasneci, Kasneci, ICML 2022, arXiv 2202.00449).

Protocol (Rong et al. 2022, and its reference code, tleemann/road_evaluation): rank the pixels of
each test image by its attribution (channels summed), remove a fraction t of them, most relevant
first (MoRF) or least relevant first (LeRF), impute the removed pixels with noisy linear imputation
(``kernels.imputation.impute``: each removed pixel the weighted mean of its 8 neighbours, then
Gaussian noise of std 0.01), and measure the accuracy (and the mean probability of the true class)
of the UNCHANGED model. MoRF: lower is better; LeRF: higher is better.

Choices, each a named parameter:

- ``aggregation=None`` (default): ``road_aggregation(method)``, the protocol's channel SUM of the
  map as the reference implementation computes it (tleemann/road_evaluation sums the channels of
  captum's attributions, ``road/utils.py rescale_channel``): a signed sum for every method,
  except where captum's map is already absolute (``Saliency`` and SmoothGrad over it return
  |gradient|): ``gradient`` and ``smoothgrad`` sum |map|; methods defined with their own pooling
  (``sens_l2``, ``sens_linf``, ``deconv_l2``, ``deconv_linf``) keep it. Pass any aggregation id
  to override (e.g. the method's ROAR ranking: ``default_aggregation(method)``).
- Ranking: descending value, exact ties in a seeded random order per image (``kernels.rank_order``,
  tie seed ``kernels.ranking.TIE_SEED``, image id = test index: the same for every method), where
  the reference adds 1e-4 * N(0, 1) jitter; LeRF removes the last ``floor(t * P)`` pixels of
  that same order.
- ``imputation="linear"`` (the paper) or ``"fixed"``: removed pixels take ``fill`` (default the
  per-channel training mean, as in ROAR): the variant whose mask shape leaks the class, to show
  the difference.
- Noise: the imputation noise of seed s at fraction index i is the counter-based stream
  ``(s * 1009 + i, image index)``. With several seeds the case uses one base model per seed
  (``suite.seeds.base_models``: the model trained with seed s, its maps with seed s, the
  noise of seed s; rows combined by ``combine_models``, verdict by model); a pretrained or
  ``--checkpoint`` model is one network, and its curves are averaged over the seeds' noise.
- ``retrain=True`` (``evaluate`` only, not used by the default cases): retrain the model on the
  imputed training set at each fraction (cached like ROAR's retrainings) and report that model's
  accuracy on the imputed test set: the ROAD paper's check that imputation removes the need to
  retrain.

The case score is the MoRF curve's mean accuracy over the fractions (lower is better), compared
with the random ranking's by the shared rule (``suite.metrics.verdict``). The LeRF curve is
recorded next to it (curves, ``lerf_mean_acc`` and a ``lerf_verdict`` in the details) but does
not decide the case: for signed maps (integrated gradients, input x gradient, LRP) the lowest
values are the most NEGATIVELY relevant pixels, not the least relevant, so LeRF removes evidence
first and a LeRF-based score would punish the sign convention rather than the ranking quality.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from kernels import impute, mask_from_order, rank_order
from suite.contract import CaseResult, Check, Picture
from suite.figures import figure_rows
from suite.methods.extract import split_attributions
from suite.metrics.verdict import PerSeedCurves
from suite.registry import MetricSpec, register_metric
from suite.specs import REAL_DATASETS

log = logging.getLogger("saliencybench")

ORDERS = ("morf", "lerf")
IMPUTATIONS = ("linear", "fixed")
NOISE_STD = 0.01
#: bump when the meaning of a cached ROAD curve or retrained ROAD model changes
ROAD_VERSION = 3     # 3: per-image accuracies kept; 2: seeded tie order
_NINE = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: fractions per scale: the paper's 0.1..0.9 (five at smoke scale)
FRACTIONS = {"smoke": (0.1, 0.3, 0.5, 0.7, 0.9), "small": _NINE, "paper": _NINE}

_SMOKE_METHODS = ("random", "sobel", "oracle", "gradient", "intgrad", "guidedbp", "sgsquared",
                  "vargrad", "gradcam")

ROAD = register_metric(MetricSpec(
    "road", description="Remove And Debias: accuracy of the unchanged model on test images whose "
    "most relevant pixels were imputed from their neighbours (MoRF), mean over the fractions "
    "(lower is better); the LeRF curve is recorded alongside",
    higher_is_better=False,
    source='Rong, Leemann, Borisov, Kasneci, Kasneci 2022, ICML, arXiv 2202.00449',
    score="mean accuracy, over the fractions, of the unchanged model on test images whose most "
          "relevant pixels were imputed from their neighbours (MoRF; lower is better)",
    datasets={"smoke": ("digits", "shapes"), "small": ("digits", "shapes") + REAL_DATASETS, "paper": None},
    models={"smoke": ("simplecnn",), "small": ("simplecnn",), "paper": None},
    methods={"smoke": _SMOKE_METHODS, "small": _SMOKE_METHODS + ("smoothgrad", "ixg"),
             "paper": None}))


@dataclass(frozen=True)
class RoadResult(PerSeedCurves):
    """``accuracy[s][i]`` / ``probability[s][i]``: seed ``seeds[s]``, fraction ``fractions[i]``."""

    method: str
    order: str                               # "morf" or "lerf"
    imputation: str                          # "linear" or "fixed"
    noise_std: float
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    accuracy: tuple[tuple[float, ...], ...]
    probability: tuple[tuple[float, ...], ...]
    base_accuracy: float                     # the model on the unmodified images (t = 0)
    retrained: bool = False
    seconds: float = 0.0
    #: per seed, each image's accuracy over the fractions (its share of fractions classified
    #: correctly; the case score is their mean); empty for the retrained variant
    per_image: tuple[tuple[float, ...], ...] = ()

    @property
    def higher_is_better(self) -> bool:
        return self.order == "lerf"

    def curve(self, label: str | None = None, what: str = "accuracy") -> dict[str, Any]:
        base = self.base_accuracy if what == "accuracy" else None
        x = list(self.fractions)
        y = self.curve_mean(what).tolist()
        s = self.curve_std(what).tolist()
        if base is not None:
            x, y, s = [0.0, *x], [base, *y], [0.0, *s]
        return {"label": label or f"{self.method} {self.order.upper()}", "x": x, "y": y,
                "y_std": s, "x_label": "fraction of pixels removed",
                "y_label": "test accuracy" if what == "accuracy" else "mean true-class probability"}


# -- pure pieces ------------------------------------------------------------------------------

#: methods whose reference-implementation map is |gradient| (captum's Saliency, abs=True by
#: default, and SmoothGrad over it): the channel sum of the absolute map
_ABS_IN_REFERENCE = ("gradient", "smoothgrad")
#: methods defined with their own channel pooling (Samek et al.'s variants) keep it
_OWN_POOLING = ("sens_l2", "sens_linf", "deconv_l2", "deconv_linf")


def road_aggregation(method: str | None) -> str:
    """The default channel pooling of ROAD for ``method`` (module doc)."""
    from suite.methods import default_aggregation

    if method in _ABS_IN_REFERENCE:
        return "abs_sum"
    if method in _OWN_POOLING:
        return default_aggregation(method)
    return "sum"


def pixel_values(attr: np.ndarray, method: str | None = None,
                 aggregation: str | None = "sum") -> np.ndarray:
    """(N, H, W) ranking values: ``attr`` pooled over channels (``None``: ``road_aggregation``)."""
    from suite.methods import aggregate

    a = np.asarray(attr)
    if a.ndim == 3:
        return np.ascontiguousarray(a)
    if a.ndim != 4:
        raise ValueError(f"attributions must be (N, C, H, W) or (N, H, W), got {a.shape}")
    how = aggregation or road_aggregation(method)
    return np.ascontiguousarray(aggregate(a, how)[:, 0])


def removal_orders(values: np.ndarray) -> dict[str, np.ndarray]:
    """{"morf": most relevant first, "lerf": least relevant first}, each (N, H*W) int64."""
    o = rank_order(values, "pixel")
    return {"morf": o, "lerf": np.ascontiguousarray(o[:, ::-1])}


def removed_at(order: np.ndarray, t: float, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool: the first ``floor(t * H*W)`` pixels of ``order`` are removed."""
    return mask_from_order(order, t, "remove").reshape(order.shape[0], *shape)


def fill_removed(x: np.ndarray, removed: np.ndarray, *, imputation: str, noise_std: float,
                 seed: int, fill=None, ids: np.ndarray | None = None) -> np.ndarray:
    """``x`` (N, C, H, W) with the ``removed`` (N, H, W) pixels imputed (linear) or set to ``fill``."""
    if imputation == "linear":
        return impute(x, removed, noise_std, seed, fallback=0.0 if fill is None else fill, ids=ids)
    if imputation == "fixed":
        f = np.zeros(x.shape[1]) if fill is None else np.broadcast_to(np.asarray(fill, np.float64),
                                                                       (x.shape[1],))
        return np.where(removed[:, None], f.astype(x.dtype)[None, :, None, None], x)
    raise ValueError(f"imputation={imputation!r}; allowed: {IMPUTATIONS}")


@torch.no_grad()
def _scores(model: nn.Module, x: np.ndarray, y: torch.Tensor, device, batch_size: int,
            hits: np.ndarray | None = None):
    """(accuracy, mean true-class probability); ``hits`` (N,): each image's correctness added."""
    correct, prob = 0, 0.0
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[i:i + batch_size]).to(device)
        yb = y[i:i + batch_size].to(device)
        out = model(xb)
        ok = out.argmax(1) == yb
        correct += int(ok.sum())
        if hits is not None:
            hits[i:i + len(ok)] += ok.cpu().numpy()
        prob += float(torch.softmax(out, 1).gather(1, yb[:, None]).sum())
    return correct / len(x), prob / len(x)


def road_curve(model: nn.Module, x, y, values: np.ndarray, *, order: str = "morf",
               fractions: Sequence[float] = _NINE, imputation: str = "linear",
               noise_std: float = NOISE_STD, seeds: Sequence[int] = (0,), fill=None,
               method: str = "", device: str | torch.device = "cpu",
               batch_size: int = 1024) -> RoadResult:
    """ROAD curve of the unchanged ``model`` on ``x`` (N, C, H, W), ``y`` (N,) over ``fractions``.

    ``values``: (N, H, W) pixel relevance (``pixel_values``). Per fraction: one mask kernel call,
    one parallel imputation of all N images, one batched forward pass.
    """
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; allowed: {ORDERS}")
    if imputation not in IMPUTATIONS:
        raise ValueError(f"imputation={imputation!r}; allowed: {IMPUTATIONS}")
    t0 = time.perf_counter()
    xn = np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x)
    yt = torch.as_tensor(y)
    n, c, h, w = xn.shape
    if values.shape != (n, h, w):
        raise ValueError(f"values must be (N, H, W) = {(n, h, w)}, got {values.shape}")
    ordr = removal_orders(values)[order]
    ids = np.arange(n, dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        base, _ = _scores(model, xn, yt, device, batch_size)
        acc = np.zeros((len(seeds), len(fractions)))
        prob = np.zeros_like(acc)
        hits = np.zeros((len(seeds), n))
        for i, t in enumerate(fractions):
            removed = removed_at(ordr, t, (h, w))
            for j, s in enumerate(seeds):
                xi = fill_removed(xn, removed, imputation=imputation, noise_std=noise_std,
                                  seed=int(s) * 1009 + i, fill=fill, ids=ids)
                acc[j, i], prob[j, i] = _scores(model, xi, yt, device, batch_size, hits[j])
    finally:
        model.train(was_training)
    return RoadResult(method, order, imputation, float(noise_std), tuple(float(t) for t in fractions),
                      tuple(int(s) for s in seeds), tuple(map(tuple, acc.tolist())),
                      tuple(map(tuple, prob.tolist())), base, False, time.perf_counter() - t0,
                      tuple(map(tuple, (hits / len(fractions)).tolist())))


# -- with the run's context -------------------------------------------------------------------

def evaluate(ctx, ds, trained, method: str, *, order: str = "morf",
             fractions: Sequence[float] | None = None, imputation: str = "linear",
             noise_std: float = NOISE_STD, aggregation: str | None = None,
             seeds: Sequence[int] | None = None, retrain: bool = False, train_spec=None,
             maps: dict[str, np.ndarray] | None = None) -> RoadResult:
    """ROAD of ``method`` for ``trained`` on the test set of ``ds`` (maps cached, see ``roar``).

    ``retrain=True``: at each fraction retrain the architecture on the imputed training set
    (first seed's noise; one retraining per seed, cached as kind ``road``; recipe
    ``roar.retrain_spec`` unless ``train_spec``) and report its accuracy on the imputed test set.
    """
    fractions = tuple(float(t) for t in (fractions or FRACTIONS[ctx.scale]))
    seeds = tuple(int(s) for s in (seeds if seeds is not None else ctx.seeds))
    splits = ("train", "test") if retrain else ("test",)
    maps = maps or {s: split_attributions(ctx, ds, trained, method, s) for s in splits}
    fill = ds.channel_mean.numpy().astype(np.float64)
    v_test = pixel_values(maps["test"], method, aggregation)
    if not retrain:
        return _cached_curve(ctx, ds, trained, method, v_test, order=order, fractions=fractions,
                             imputation=imputation, noise_std=noise_std, seeds=seeds, fill=fill)
    return _retrained(ctx, ds, trained, method, pixel_values(maps["train"], method, aggregation),
                      v_test, order=order, fractions=fractions, imputation=imputation,
                      noise_std=noise_std, seeds=seeds, fill=fill, train_spec=train_spec,
                      aggregation=aggregation)


def _cached_curve(ctx, ds, trained, method, v_test, *, order, fractions, imputation, noise_std,
                  seeds, fill) -> RoadResult:
    """``road_curve`` through the artifact cache (kind ``road_curves``): a re-run, and every case
    after the first that needs the same random baseline, reads the curve instead of recomputing
    it. The key holds everything the curve depends on: the model's artifact key, the test set's
    fingerprint, the ranking values' fingerprint and every parameter."""
    import dataclasses

    from suite.cache import JSON
    from suite.methods.extract import result_spec

    spec = result_spec("road", ROAD_VERSION, model=trained.key, data=ds.fingerprint, method=method,
                       maps=v_test, order=order, fractions=list(fractions), imputation=imputation,
                       noise_std=noise_std, seeds=list(seeds), fill=[float(v) for v in np.ravel(fill)])

    def build() -> dict:
        res = road_curve(trained.model, ds.x_test, ds.y_test, v_test, order=order,
                         fractions=fractions, imputation=imputation, noise_std=noise_std,
                         seeds=seeds, fill=fill, method=method, device=ctx.device)
        return dataclasses.asdict(res)

    d = ctx.cache.fetch("road_curves", f"{ds.name}-{trained.model_name}-{method}-{order}", spec,
                        build, JSON).value
    tup = lambda rows: tuple(tuple(float(v) for v in r) for r in rows)  # noqa: E731
    return RoadResult(**{**d, "fractions": tuple(d["fractions"]), "seeds": tuple(d["seeds"]),
                         "accuracy": tup(d["accuracy"]), "probability": tup(d["probability"]),
                         "per_image": tup(d.get("per_image", ()))})


def _retrained(ctx, ds, trained, method, v_train, v_test, *, order, fractions, imputation,
               noise_std, seeds, fill, train_spec, aggregation) -> RoadResult:
    from suite.artifacts import fit_cached
    from suite.methods import fingerprint
    from suite.methods.extract import result_spec
    from suite.training import retrain_spec

    t0 = time.perf_counter()
    train_spec = train_spec or retrain_spec(ds.name, trained.model_name, ctx.scale)
    o_tr, o_te = removal_orders(v_train)[order], removal_orders(v_test)[order]
    h, w = ds.in_shape[1:]
    n_tr, n_te = len(ds.x_train), len(ds.x_test)
    acc = np.zeros((len(seeds), len(fractions)))
    base = result_spec("road_retrained", ROAD_VERSION, model=trained.key, data=ds.fingerprint,
                       method=method, maps=v_test, order=order, imputation=imputation,
                       noise_std=noise_std, aggregation=aggregation,
                       values_train=fingerprint(v_train))
    for i, t in enumerate(fractions):
        kw = dict(imputation=imputation, noise_std=noise_std, seed=seeds[0] * 1009 + i, fill=fill)
        x_tr = fill_removed(ds.x_train.numpy(), removed_at(o_tr, t, (h, w)),
                            ids=np.arange(n_tr, dtype=np.int64), **kw)
        x_te = fill_removed(ds.x_test.numpy(), removed_at(o_te, t, (h, w)),
                            ids=np.arange(n_tr, n_tr + n_te, dtype=np.int64), **kw)
        for j, s in enumerate(seeds):
            _, info, _, _ = fit_cached(
                ctx, name=f"{ds.name}-{trained.model_name}-{method}-{order}-{imputation}-t{t:g}-s{s}",
                # the imputation noise's seed is part of what the model was trained on: it
                # follows the fraction's position and the first seed, so both enter the key
                spec={**base, "fraction": t, "noise_seed": kw["seed"]},
                model_name=trained.model_name, in_shape=ds.in_shape,
                num_classes=ds.num_classes, x_train=torch.from_numpy(x_tr), y_train=ds.y_train,
                x_test=torch.from_numpy(x_te), y_test=ds.y_test, train_spec=train_spec, seed=s,
                kind="road")
            acc[j, i] = float(info["test_acc"])
    nan = tuple(tuple(float("nan") for _ in fractions) for _ in seeds)
    return RoadResult(method, order, imputation, float(noise_std), fractions, seeds,
                      tuple(map(tuple, acc.tolist())), nan, float(trained.test_acc), True,
                      time.perf_counter() - t0)


def combine_models(parts: Sequence[RoadResult]) -> RoadResult:
    """One ``RoadResult`` of several base models' (one seed each, the same test images and
    fractions): row s of ``accuracy`` / ``probability`` / ``per_image`` is the model of seed s;
    ``base_accuracy`` the models' mean."""
    first = parts[0]
    rows = lambda what: tuple(r for p in parts for r in getattr(p, what))  # noqa: E731
    return RoadResult(first.method, first.order, first.imputation, first.noise_std,
                      first.fractions, rows("seeds"), rows("accuracy"), rows("probability"),
                      float(np.mean([p.base_accuracy for p in parts])), False,
                      sum(p.seconds for p in parts), rows("per_image"))


# -- the case ---------------------------------------------------------------------------------

def evaluate_case(case, ds, trained, ctx) -> CaseResult:
    """The ROAD case: MoRF and LeRF of the method and of random; score = mean MoRF accuracy,
    verdict against random's with the shared rule (the LeRF verdict is recorded, not asserted),
    asserted as the method's role asks (``suite.roles``); the oracle must beat random on MoRF by
    ``verdict.ORACLE_RULE``; the random case checks that its MoRF and LeRF curves coincide
    within 0.1."""
    from suite.seeds import base_models
    from suite.metrics.verdict import conclude, oracle_check, oracle_rule_check, paired_verdict

    pairs = base_models(ctx, ds, trained, "road")
    keys = list(dict.fromkeys(tm.key for _, tm in pairs))
    by_model = len(keys) > 1

    def run(method: str, order: str) -> RoadResult:
        if not by_model:     # one model: the seeds are noise draws of its imputation
            return evaluate(ctx, ds, trained, method, order=order)
        return combine_models([evaluate(ctx, ds, tm, method, order=order, seeds=(s,), maps={
            "test": split_attributions(ctx, ds, tm, method, "test", seed=s)}) for s, tm in pairs])

    res = {o: run(case.method, o) for o in ORDERS}
    rnd = res if case.method == "random" else {o: run("random", o) for o in ORDERS}
    curves = [res[o].curve(f"{case.method} {o.upper()}") for o in ORDERS]
    if rnd is not res:
        curves += [rnd[o].curve(f"random {o.upper()}") for o in ORDERS]
    details = {"fractions": list(res["morf"].fractions), "seeds": list(res["morf"].seeds),
               "imputation": "noisy linear", "noise_std": NOISE_STD,
               "aggregation": road_aggregation(case.method),
               "morf_mean_acc": res["morf"].score, "lerf_mean_acc": res["lerf"].score,
               "random_morf_mean_acc": rnd["morf"].score, "random_lerf_mean_acc": rnd["lerf"].score,
               "morf_prob": res["morf"].curve_mean("probability").tolist(),
               "lerf_prob": res["lerf"].curve_mean("probability").tolist(),
               "seconds": round(res["morf"].seconds + res["lerf"].seconds, 3),
               "n_models": len(keys), "base_models": keys,
               "score_rule": "mean MoRF test accuracy over the fractions (lower is better); "
                             "LeRF recorded, not asserted",
               # each image's MoRF accuracy over the fractions, mean over the seeds (their base
               # models, or the noise draws of one model)
               "per_image": [float(v) for v in np.mean(res["morf"].per_image, axis=0)]}
    # picture: the first test image, MoRF-removed at each fraction (noisy linear vs fixed fill)
    fr = res["morf"].fractions
    x0 = ds.x_test[:1].numpy()
    v0 = pixel_values(split_attributions(ctx, ds, trained, case.method, "test")[:1], case.method,
                      None)
    o0 = removal_orders(v0)["morf"]
    fill = ds.channel_mean.numpy().astype(np.float64)
    rows = {f"MoRF {imp}": [fill_removed(x0, removed_at(o0, t, x0.shape[2:]), imputation=imp,
                                         noise_std=NOISE_STD, seed=i, fill=fill)[0]
                            for i, t in enumerate(fr)] for imp in IMPUTATIONS}
    picture = Picture.drawn(f"ROAD: one test image with its most relevant pixels imputed (noisy "
                            f"linear) or set to the mean (fixed), per fraction ({case.method})",
                            figure_rows, rows, fr, title=f"ROAD on {case.dataset} ({case.method})")
    if case.method == "random":
        m, lr = res["morf"].curve_mean(), res["lerf"].curve_mean()
        same = Check("random_curve", bool(np.all(np.abs(m - lr) <= 0.1)), (
            f"random ranking: MoRF {np.round(m, 3).tolist()} and LeRF {np.round(lr, 3).tolist()} "
            "differ by more than 0.1; they should coincide up to noise"))
        return CaseResult(score=res["morf"].score, higher_is_better=False, curves=curves,
                          details={**details, "check": "MoRF and LeRF curves within 0.1 of each "
                                                       "other (a random order has no preferred "
                                                       "direction)"},
                          figures=[picture], checks=[same])
    verdict = paired_verdict(res["morf"].per_image, rnd["morf"].per_image, higher_is_better=False,
                             seed_scores=res["morf"].seed_scores(),
                             random_seed_scores=rnd["morf"].seed_scores(), by_model=by_model)
    lerf_v = paired_verdict(res["lerf"].per_image, rnd["lerf"].per_image, higher_is_better=True,
                            seed_scores=res["lerf"].seed_scores(),
                            random_seed_scores=rnd["lerf"].seed_scores(), by_model=by_model)
    details["lerf_verdict"] = lerf_v.as_dict()
    checks = []
    if case.method == "oracle":   # the benchmark's own check: if this fails, ROAD is broken
        oracle = oracle_check(res["morf"].score, rnd["morf"].score, chance=1.0 / ds.num_classes,
                              higher_is_better=False)
        details["oracle_check"] = oracle.as_dict()
        checks.append(oracle_rule_check(case, oracle, "ROAD-MoRF"))
    return conclude(case, verdict, curves=curves, details=details, figures=[picture],
                    checks=checks)
