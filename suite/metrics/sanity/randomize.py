"""The randomization tests as pure functions returning a frozen :class:`SanityResult`:
cascading and independent layer randomization, the model noise test (all layers at once, or
layer by layer: additive / multiplicative), data randomization; and the cache round-trip."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from kernels.similarity import MapSimilarity
from suite.metrics.randomization import (NOISE_MODES, cascading_models,
                                         cascading_noise_models, independent_models,
                                         independent_noise_models, noisy_model)
from suite.metrics.sanity.similarity import PRIMARY, SIMILARITIES, _finish, comparer, normalize_maps
from suite.registry import METHODS

#: default noise levels s of the model noise test (multiplicative: weights x N(1, s^2))
NOISE_LEVELS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.0)

#: the random floor (similarity of random maps to the reference) is measured on this many images
FLOOR_IMAGES = 32

#: maps of this many bytes are compared in one batched similarity pass (see _evaluate)
_PENDING_BYTES = 256 << 20


@dataclass(frozen=True)
class SanityResult:
    """Similarity of a method's maps to its trained-model maps along one randomization test.

    ``steps[0]`` is "trained" (the trained model's maps recomputed with seed + 1: the trained-model
    level), then one step per randomized layer / noise level / permuted-label model.
    ``similarity[measure][k]`` is the mean over images at step k, ``similarity_std`` the std.
    ``accuracy[k]``: the step-k model's accuracy on the images (against their labels);
    ``agreement[k]``: fraction of images whose predicted class is the trained model's.
    ``examples``: (steps, n_examples, H, W) normalised maps for the picture.
    """

    test: str
    method: str
    steps: tuple[str, ...]
    similarity: dict[str, tuple[float, ...]]
    similarity_std: dict[str, tuple[float, ...]]
    accuracy: tuple[float, ...]
    agreement: tuple[float, ...]
    n_images: int
    n_constant: tuple[int, ...]
    random_floor: dict[str, float]
    examples: np.ndarray = field(repr=False, compare=False)
    params: dict[str, Any] = field(default_factory=dict)
    #: ``per_image[k][i]``: image i's ``PRIMARY`` similarity at step k (the paired interval's units)
    per_image: tuple[tuple[float, ...], ...] = ()

    def curves(self) -> list[dict]:
        x = list(range(len(self.steps)))
        out = [{"label": k, "x": x, "y": list(self.similarity[k]), "y_std": list(self.similarity_std[k]),
                "x_label": f"{self.test} step (0 = trained; labels in details.steps)",
                "y_label": "similarity to the trained model's maps"} for k in SIMILARITIES]
        if all(math.isnan(a) for a in self.accuracy):
            return out
        out.append({"label": "accuracy", "x": x, "y": list(self.accuracy), "y_std": None,
                    "x_label": f"{self.test} step", "y_label": "accuracy of the step's model"})
        return out


def _is_stochastic(method: str) -> bool:
    return "seed" in dict(METHODS[method].params)


#: salt of the per-image input-noise seeds of the smoothed tests (sMPRT)
_SALT_SMOOTH = 0x5A17


def _check_smooth(smooth: tuple[int, float] | None) -> tuple[int, float] | None:
    if smooth is None:
        return None
    try:
        n, level = int(smooth[0]), float(smooth[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"smooth must be (n_samples, noise_level), got {smooth!r}") from None
    if n < 1 or not (math.isfinite(level) and level >= 0):
        raise ValueError(f"smooth must be (n_samples >= 1, noise_level >= 0), got {smooth!r}")
    return n, level


def _maps(model, model_name, method, x, target, *, seed, params, device, batch_size, smooth=None,
          noise_seed=0):
    """The method's maps of ``x``; with ``smooth=(n, level)`` the mean of the maps of n inputs
    x + N(0, (level * (max - min of the image))^2), the last one noise-free (smoothed MPRT,
    Hedstroem et al. 2023, as Quantus's SmoothMPRT). The noise is drawn per image from seeds of
    (noise_seed, image index), so every step of a test sees the same noisy inputs."""
    from suite.methods import extract
    from suite.methods.gradients import image_seeds

    def one(inputs):
        return extract(model, model_name, method, inputs, labels=target, target="label",
                       seed=seed, params=params, device=device, batch_size=batch_size)

    if smooth is None or smooth[0] == 1:
        return one(x)
    n, level = smooth
    gens = [torch.Generator().manual_seed(s) for s in image_seeds(noise_seed, None, len(x), _SALT_SMOOTH)]
    x_cpu = x.detach().cpu()
    span = (x_cpu.flatten(1).amax(1) - x_cpu.flatten(1).amin(1)).view(-1, *([1] * (x.ndim - 1)))
    total = None
    for _ in range(n - 1):
        eps = torch.stack([torch.randn(x_cpu.shape[1:], generator=g, dtype=x_cpu.dtype) for g in gens])
        a = torch.as_tensor(one((x_cpu + level * span * eps).to(x.device)))
        total = a.clone() if total is None else total.add_(a)
    return total.add_(torch.as_tensor(one(x))).div_(n)


def _accuracy(model, x, labels, ref_pred, device, batch_size) -> tuple[float, float]:
    from suite.training import predict

    pred = predict(model, x, device=device, batch_size=max(batch_size, 256)).argmax(1)
    return float((pred == labels).float().mean()), float((pred == ref_pred).float().mean())


@dataclass(frozen=True)
class MapRun:
    """How a test computes its maps: the method on the model (``model_name`` for its layer), the
    method's parameters, the seed, device, batch size, the number of example maps kept for the
    picture and the smoothed variant (``smooth=(n_samples, noise_level)``, see ``_maps``)."""

    model_name: str
    method: str
    seed: int = 0
    params: dict | None = None
    device: str = "cpu"
    batch_size: int = 128
    n_examples: int = 2
    smooth: tuple[int, float] | None = None


def _evaluate(test: str, model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
              steps: Iterable[tuple[str, nn.Module]], run: MapRun, *, info: dict | None = None,
              accuracy: bool = True) -> SanityResult:
    from suite.methods import default_aggregation
    from suite.training import predict

    model_name, method, seed, device = run.model_name, run.method, run.seed, run.device
    batch_size, n_examples = run.batch_size, run.n_examples

    if len(x) != len(labels) or len(x) == 0:
        raise ValueError(f"{test}: {len(x)} images and {len(labels)} labels; need equal, > 0")
    how = default_aggregation(method)
    target = predict(model, x, device=device, batch_size=max(batch_size, 256)).argmax(1)
    kw = dict(seed=seed, params=run.params, device=device, batch_size=batch_size,
              smooth=_check_smooth(run.smooth), noise_seed=seed)
    ref = normalize_maps(_maps(model, model_name, method, x, target, **kw), how)
    kw["seed"] = seed + 1
    if _is_stochastic(method):
        trained = normalize_maps(_maps(model, model_name, method, x, target, **kw), how)
    else:
        trained = ref
    # The maps of every step are computed first and compared in as few batched similarity passes
    # as _PENDING_BYTES allows (one for the smoke to paper matrices of 32x32 maps): a numba
    # parallel region between two torch passes leaves its worker threads spinning on the cores
    # torch's threads want (measured: the cascade's overhead over its attribution passes fell by
    # about a third).
    comp: MapSimilarity | None = None
    sims: list[dict[str, np.ndarray]] = []
    pending: list[np.ndarray] = []

    def flush():
        nonlocal comp
        if comp is None:
            comp = comparer(ref)
        if pending:
            n = len(ref)
            both = _finish(comp(np.concatenate(pending), rows=np.tile(np.arange(n), len(pending))))
            sims.extend({k: v[s * n:(s + 1) * n] for k, v in both.items()} for s in range(len(pending)))
            pending.clear()

    if trained is not ref:
        pending.append(trained)
    names, accs, agrees, examples = ["trained"], [], [], [trained]
    nan2 = (float("nan"), float("nan"))
    acc0 = _accuracy(model, x, labels, target, device, batch_size) if accuracy else nan2
    accs.append(acc0[0])
    agrees.append(acc0[1])
    ne = min(n_examples, len(x))
    for name, m in steps:
        maps = normalize_maps(_maps(m, model_name, method, x, target, **kw), how)
        names.append(name)
        pending.append(maps)
        if len(pending) * maps.nbytes >= _PENDING_BYTES:
            flush()
        acc, agree = _accuracy(m, x, labels, target, device, batch_size) if accuracy else nan2
        accs.append(acc)
        agrees.append(agree)
        examples.append(maps[:ne])
    flush()
    if trained is ref:  # a deterministic method: step 0 is the reference itself
        sims.insert(0, _finish(comp.identical()))
    rng = np.random.default_rng(seed)
    nf = min(len(ref), FLOOR_IMAGES)
    floor = _finish(comp(rng.uniform(-1.0, 1.0, (nf,) + ref.shape[1:]), rows=np.arange(nf)))
    return SanityResult(
        test=test, method=method, steps=tuple(names),
        similarity={k: tuple(float(s[k].mean()) for s in sims) for k in SIMILARITIES},
        similarity_std={k: tuple(float(s[k].std()) for s in sims) for k in SIMILARITIES},
        accuracy=tuple(accs), agreement=tuple(agrees), n_images=len(x),
        n_constant=tuple(int(s["n_constant"].sum()) for s in sims),
        random_floor={k: float(floor[k].mean()) for k in SIMILARITIES},
        examples=np.stack([e[:ne] for e in examples]), params=dict(info or {}),
        per_image=tuple(tuple(float(v) for v in s[PRIMARY]) for s in sims))


#: bump when the meaning of a cached SanityResult changes (steps, normalisation, measures)
SANITY_VERSION = 3   # 3: per-image similarities kept; 2: one-channel maps pooled by |.|


def cached(ctx, trained, test: str, method: str, x: torch.Tensor, labels: torch.Tensor,
           build: Callable[[], SanityResult], *, params: dict | None = None, seed: int = 0,
           extra: dict | None = None) -> tuple[SanityResult, bool]:
    """``build()`` through the artifact cache (kind "sanity"): (result, from_cache).

    A re-run reads the result instead of recomputing every randomized model's maps. The key holds
    what the result depends on: the trained model's artifact key, the test, the method and its
    resolved parameters, the seed, fingerprints of the images and labels, ``extra`` (the test's
    own arguments, e.g. the permuted-label model's key), SANITY_VERSION and the methods' version.
    """
    import json

    from suite.cache import NPZ
    from suite.methods import fingerprint
    from suite.methods.extract import resolve_params, result_spec

    spec = result_spec(f"sanity_{test}", SANITY_VERSION, model=trained.key, data=fingerprint(x),
                       method=method, model_name=trained.model_name, seed=seed,
                       params=resolve_params(method, trained.model_name, params, seed),
                       labels=fingerprint(labels), extra=extra or {})

    def to_arrays() -> dict[str, np.ndarray]:
        r = build()
        meta = {k: v for k, v in asdict(r).items() if k != "examples"}
        return {"meta": np.array(json.dumps(meta, sort_keys=True)), "examples": r.examples}

    fetched = ctx.cache.fetch("sanity", f"{trained.model_name}-{method}-{test}", spec, to_arrays,
                              codec=NPZ)
    meta = json.loads(str(fetched.value["meta"]))
    tup = lambda d: {k: tuple(v) for k, v in d.items()}  # noqa: E731
    result = SanityResult(
        test=meta["test"], method=meta["method"], steps=tuple(meta["steps"]),
        similarity=tup(meta["similarity"]), similarity_std=tup(meta["similarity_std"]),
        accuracy=tuple(meta["accuracy"]), agreement=tuple(meta["agreement"]),
        n_images=meta["n_images"], n_constant=tuple(meta["n_constant"]),
        random_floor=meta["random_floor"], examples=fetched.value["examples"], params=meta["params"],
        per_image=tuple(tuple(v) for v in meta.get("per_image", ())))
    return result, fetched.from_cache


def _layers(model: nn.Module, model_name: str, layers: Sequence[str] | None) -> list[str]:
    from suite.models import layer_names

    return list(layers) if layers is not None else layer_names(model, model_name)


def cascading_randomization(model: nn.Module, model_name: str, method: str, x: torch.Tensor,
                            labels: torch.Tensor, *, order: str = "top_down",
                            layers: Sequence[str] | None = None, seed: int = 0,
                            params: dict | None = None, device: str = "cpu", batch_size: int = 128,
                            n_examples: int = 2, accuracy: bool = False,
                            smooth: tuple[int, float] | None = None) -> SanityResult:
    """Cascading randomization: steps "trained", then each layer (cumulatively re-initialised).

    ``accuracy=True`` also tracks each step's accuracy (one more forward pass per step; NaN when
    off). ``smooth=(n_samples, noise_level)``: the smoothed MPRT (Hedstroem et al. 2023; Quantus's
    defaults are (50, 0.1)): every map is the mean over n noisy copies of the input (see
    ``_maps``), which removes the noise of the maps themselves from the comparison (n times the
    attribution passes)."""
    layers = _layers(model, model_name, layers)
    steps = cascading_models(model, layers, order=order, seed=seed)
    info = {"order": order, "layers": layers}
    if smooth is not None:
        info["smooth"] = list(_check_smooth(smooth))
    return _evaluate("cascade", model, x, labels, steps,
                     MapRun(model_name, method, seed, params, device, batch_size, n_examples, smooth),
                     info=info, accuracy=accuracy)


def independent_randomization(model: nn.Module, model_name: str, method: str, x: torch.Tensor,
                              labels: torch.Tensor, *, layers: Sequence[str] | None = None,
                              seed: int = 0, params: dict | None = None, device: str = "cpu",
                              batch_size: int = 128, n_examples: int = 2,
                              accuracy: bool = False) -> SanityResult:
    """Independent randomization: steps "trained", then each layer alone re-initialised
    (``accuracy`` as in :func:`cascading_randomization`)."""
    layers = _layers(model, model_name, layers)
    steps = independent_models(model, layers, seed=seed)
    return _evaluate("independent", model, x, labels, steps,
                     MapRun(model_name, method, seed, params, device, batch_size, n_examples),
                     info={"layers": layers}, accuracy=accuracy)


def model_noise(model: nn.Module, model_name: str, method: str, x: torch.Tensor,
                labels: torch.Tensor, *, levels: Sequence[float] = NOISE_LEVELS,
                mode: str = "multiplicative", layers: Sequence[str] | None = None, seed: int = 0,
                params: dict | None = None, device: str = "cpu", batch_size: int = 128,
                n_examples: int = 2) -> SanityResult:
    """Model noise test: steps "trained", then one noisy copy per level (``noisy_model``).

    ``layers=None`` puts noise on every parameter ("all at once"); pass one layer to go layer by
    layer.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode {mode!r}; allowed: {', '.join(NOISE_MODES)}")
    levels = [float(s) for s in levels]
    steps = ((f"s={s:g}", noisy_model(model, s, mode=mode, layers=layers, seed=seed)) for s in levels)
    return _evaluate("noise", model, x, labels, steps,
                     MapRun(model_name, method, seed, params, device, batch_size, n_examples),
                     info={"mode": mode, "levels": levels, "layers": list(layers) if layers else "all"})


#: the cases' layer-wise noise level per mode: additive N(0, s^2) with s = 1 (about 10x the
#: weights' own scale in the suite's small models: a noised layer carries no trained signal) and
#: multiplicative N(1, s^2) with s = 2 (the noise test's destroying level)
LAYER_NOISE = {"additive": 1.0, "multiplicative": 2.0}

NOISE_VARIANTS = ("cascade", "independent")


def layer_noise(model: nn.Module, model_name: str, method: str, x: torch.Tensor,
                labels: torch.Tensor, *, s: float, mode: str = "additive",
                variant: str = "cascade", order: str = "top_down",
                layers: Sequence[str] | None = None, seed: int = 0, params: dict | None = None,
                device: str = "cpu", batch_size: int = 128, n_examples: int = 2) -> SanityResult:
    """The model noise test layer by layer (the sanity-checks replication): steps "trained", then
    noise of size ``s`` (``mode``) added to each declared layer, top layer first, one more layer
    per step (``variant="cascade"``), or to one layer at a time, the rest trained
    ("independent"). Each step's accuracy is recorded beside the similarities. The test names
    are "noise_cascade" / "noise_independent" (the verdict treats them as cascade / independent).
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode {mode!r}; allowed: {', '.join(NOISE_MODES)}")
    if variant not in NOISE_VARIANTS:
        raise ValueError(f"noise variant {variant!r}; allowed: {', '.join(NOISE_VARIANTS)}")
    layers = _layers(model, model_name, layers)
    if variant == "cascade":
        steps = cascading_noise_models(model, layers, float(s), mode=mode, order=order, seed=seed)
    else:
        steps = independent_noise_models(model, layers, float(s), mode=mode, seed=seed)
    return _evaluate(f"noise_{variant}", model, x, labels, steps,
                     MapRun(model_name, method, seed, params, device, batch_size, n_examples),
                     info={"mode": mode, "level": float(s), "variant": variant, "layers": layers,
                           **({"order": order} if variant == "cascade" else {})})


def data_randomization(model: nn.Module, permuted: nn.Module, model_name: str, method: str,
                       x: torch.Tensor, labels: torch.Tensor, *, seed: int = 0,
                       params: dict | None = None, device: str = "cpu", batch_size: int = 128,
                       n_examples: int = 2) -> SanityResult:
    """Data randomization: steps "trained", then the permuted-label model (same architecture)."""
    return _evaluate("datarand", model, x, labels, [("permuted labels", permuted)],
                     MapRun(model_name, method, seed, params, device, batch_size, n_examples))
