"""Cached trained models: the bridge between specs, the trainer and the artifact cache.

``trained_model(ctx, dataset, model_name, seed)`` returns a ``TrainedModel`` whose ``key`` names
its artifact; downstream artifacts (attributions, retrained ROAR models) put that key in their
own spec, so they are invalidated exactly when the model they derive from changes.
"""
from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from suite.cache import TORCH
from suite.data.base import Context, ImageDataset
from suite.models import build_model
from suite.registry import MODELS
from suite.specs import TrainSpec, spec_dict
from suite.training import numerics, recipe, torch_threads, train, uses_channels_last

log = logging.getLogger("saliencybench")

LABEL_MODES = ("true", "permuted")

#: epochs of the permuted-label model (data randomization test) per scale: at least this many
PERMUTED_EPOCHS = {"smoke": 30, "small": 40, "paper": 60}


def permuted_train_spec(base: TrainSpec, scale: str) -> TrainSpec:
    """The recipe of a model trained on permuted labels: it can only memorise them, so no
    augmentation, no weight decay, Adam at 3e-3, batch 64 and more epochs (measured at smoke scale:
    30 epochs reach 0.999 training accuracy on digits and 1.0 on shapes; the true-label recipe's 8
    reach 0.20 and 0.37)."""
    return replace(base, epochs=max(base.epochs, PERMUTED_EPOCHS[scale]), optimizer="adam", lr=3e-3,
                   weight_decay=0.0, augment="none", batch_size=64, label_smoothing=0.0)


@dataclass
class TrainedModel:
    model: nn.Module            # eval mode, on the context's device; treat as read-only
    model_name: str
    dataset: str
    seed: int
    labels: str
    key: str                    # artifact key: put it in the spec of anything derived from it
    train_acc: float
    test_acc: float
    min_test_acc: float
    from_cache: bool
    build_seconds: float


def fit_spec(ctx: Context, *, spec: dict, model: nn.Module, model_name: str, in_shape,
             num_classes: int, train_spec: TrainSpec, seed: int) -> dict:
    """The cache spec of a trained model (``fit_cached``'s key; ``suite.plan`` computes it
    without training): the data ``spec``, the architecture, recipe, seed and numerics."""
    # the architecture is part of the key: a model redefined under the same id is retrained
    arch = hashlib.sha256(repr(model).encode()).hexdigest()[:16]
    return {"spec": spec, "model": model_name, "arch": arch, "in_shape": list(in_shape),
            "num_classes": num_classes, "train": spec_dict(train_spec), "seed": seed,
            "numerics": numerics(ctx.device, ctx.threads, channels_last=uses_channels_last(model))}


def fit_cached(ctx: Context, *, name: str, spec: dict, model_name: str, in_shape, num_classes: int,
               x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor | None,
               y_test: torch.Tensor | None, train_spec: TrainSpec, seed: int,
               kind: str = "models") -> tuple[nn.Module, dict, bool, str]:
    """Train ``model_name`` on the given tensors unless the cache has it; (model, info, cached, key).

    ``spec`` must identify the training data (e.g. a dataset fingerprint plus how it was modified).
    """
    model = build_model(model_name, num_classes, in_shape, seed, device="cpu")
    full_spec = fit_spec(ctx, spec=spec, model=model, model_name=model_name, in_shape=in_shape,
                         num_classes=num_classes, train_spec=train_spec, seed=seed)
    holder: dict = {}

    def build() -> dict:
        with torch_threads(ctx.threads):
            res = train(train_spec, copy.deepcopy(model).to(ctx.device), x_train, y_train,
                        x_test=x_test, y_test=y_test, device=ctx.device, seed=seed, label=name,
                        channels_last=uses_channels_last(model))
        holder["acc"] = {"train_acc": res.train_acc, "test_acc": res.test_acc}
        return {k: v.detach().cpu() for k, v in res.model.state_dict().items()}

    fetched = ctx.cache.fetch(kind, name, full_spec, build, TORCH, info=lambda _: holder["acc"])
    model.load_state_dict(fetched.value)
    model.to(ctx.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = fetched.meta["info"] if fetched.from_cache else holder["acc"]
    return model, {**info, "build_seconds": fetched.meta.get("build_seconds")}, \
        fetched.from_cache, fetched.key


def trained_model(ctx: Context, ds: ImageDataset, model_name: str, seed: int = 0, *,
                  labels: str = "true") -> TrainedModel:
    """The model ``model_name`` trained on ``ds`` (true or permuted labels) with ``seed``, cached."""
    if model_name not in MODELS:
        raise KeyError(f"model {model_name!r} is not registered; known: {sorted(MODELS)}")
    if labels not in LABEL_MODES:
        raise ValueError(f"labels={labels!r}; allowed: {LABEL_MODES}")
    rec = recipe(ds.name, model_name, ctx.scale)
    y_train, y_test = ds.y_train, ds.y_test
    if labels == "permuted":
        g = torch.Generator().manual_seed(10_000 + seed)
        y_train = y_train[torch.randperm(len(y_train), generator=g)]
        y_test = None
    name, spec, train_spec = _trained_spec(ctx, ds, model_name, seed, labels)
    model, info, cached, key = fit_cached(
        ctx, name=name, spec=spec, model_name=model_name, in_shape=ds.in_shape,
        num_classes=ds.num_classes, x_train=ds.x_train, y_train=y_train,
        x_test=ds.x_test if y_test is not None else None, y_test=y_test,
        train_spec=train_spec, seed=seed)
    log.info("%s %s (train acc %.3f, test acc %s)", "loaded from cache" if cached else "trained",
             name, info["train_acc"], "n/a" if info["test_acc"] is None else f"{info['test_acc']:.3f}")
    return TrainedModel(model, model_name, ds.name, seed, labels, key, info["train_acc"],
                        info["test_acc"] if info["test_acc"] is not None else float("nan"),
                        rec.min_test_acc, cached, info.get("build_seconds") or 0.0)


def _trained_spec(ctx: Context, ds: ImageDataset, model_name: str, seed: int,
                  labels: str) -> tuple[str, dict, TrainSpec]:
    rec = recipe(ds.name, model_name, ctx.scale)
    spec = {"dataset": ds.name, "fingerprint": ds.fingerprint, "labels": labels}
    name = f"{ds.name}-{model_name}-s{seed}" + ("-permuted" if labels == "permuted" else "")
    train_spec = permuted_train_spec(rec.train, ctx.scale) if labels == "permuted" else rec.train
    return name, spec, train_spec


def trained_model_artifact(ctx: Context, ds: ImageDataset, model_name: str, seed: int = 0, *,
                           labels: str = "true") -> tuple[str, str, dict]:
    """(kind, name, spec) of the artifact ``trained_model`` fetches, computed without training
    (``suite.plan``: its key, and whether the cache holds it)."""
    name, spec, train_spec = _trained_spec(ctx, ds, model_name, seed, labels)
    model = build_model(model_name, ds.num_classes, ds.in_shape, seed, device="cpu")
    return "models", name, fit_spec(ctx, spec=spec, model=model, model_name=model_name,
                                    in_shape=ds.in_shape, num_classes=ds.num_classes,
                                    train_spec=train_spec, seed=seed)
