"""Frozen specifications: what a dataset, model, training recipe, method and case *are*.

Specs are plain data. Their canonical JSON (``spec_dict``) is what cache keys are made of, so a
field that changes the meaning of an artifact belongs in a spec, and nothing else does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

SCALES = ("smoke", "small", "paper")
#: the on-disk datasets the default (small) scale includes when present (skipped with the way to
#: get them when absent); their CPU-sized protocol is in the README, "Real datasets at small scale"
REAL_DATASETS = ("mnist", "fashion", "cifar10", "imagenette", "folder")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {', '.join(SCALES)}")
    return scale


@dataclass(frozen=True)
class TrainSpec:
    """Every hyperparameter of one training run (the airbench habit: one frozen spec)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"          # "sgd" (Nesterov) or "adam"
    schedule: str = "onecycle"      # "onecycle" (linear warm-up then linear decay) or "constant"
    warmup_frac: float = 0.2
    label_smoothing: float = 0.0
    augment: str = "none"           # "none", "crop" (pad 2 + random crop), "flip_crop"

    def __post_init__(self) -> None:
        allowed = {"optimizer": ("sgd", "adam"), "schedule": ("onecycle", "constant"),
                   "augment": ("none", "crop", "flip_crop")}
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"TrainSpec.{name}={getattr(self, name)!r}; allowed: {values}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainSpec needs epochs >= 1 and batch_size >= 1, got {self}")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset family. ``load(scale, ctx) -> ImageDataset`` builds the tensors.

    ``embedded`` datasets need no file on disk; the others are looked for under the data root and
    skipped with a one-line reason when absent.
    """

    name: str
    load: Callable[..., Any] = field(compare=False, repr=False)
    description: str = ""
    embedded: bool = False
    has_masks: bool = False
    scales: tuple[str, ...] = SCALES
    eval_only: bool = False         # no training split: pairs only with models listing it in datasets


@dataclass(frozen=True)
class ModelSpec:
    """A model family: ``factory(num_classes, in_shape) -> nn.Module``.

    ``gradcam_layer`` is the dotted name of the module whose output Grad-CAM uses (None: no
    convolutional feature map, Grad-CAM is not applicable). ``layers`` are the dotted names of the
    parameterised modules from input to output, the order the sanity checks randomize in (reversed
    for the cascading test); None means "every module with parameters, in registration order".
    """

    name: str
    factory: Callable[..., Any] = field(compare=False, repr=False)
    description: str = ""
    gradcam_layer: str | None = None
    layers: tuple[str, ...] | None = None
    scales: tuple[str, ...] = SCALES
    min_size: int = 8               # smallest input side the architecture accepts
    datasets: tuple[str, ...] | None = None   # the only datasets it pairs with (None: any not eval_only)
    metrics: tuple[str, ...] | None = None    # the only metrics it joins (None: all)


#: channel poolings a method may declare (``suite.methods.aggregate``)
AGGREGATIONS = ("abs_sum", "l2", "linf", "sum")
#: what a method is to the benchmark; the controls' roles and the policy every metric applies to
#: each are in ``suite.controls``
ROLES = ("method", "baseline", "control", "oracle")


@dataclass(frozen=True)
class MethodSpec:
    """An attribution method: ``explain(model, x, target, **params) -> Tensor``, and everything
    the suite knows about it (one record; ``suite.registry.register_method`` fills it).

    ``aggregation``: the channel pooling of the method's paper (what pixel-level metrics apply).
    ``same_as``: the method whose raw map this is (e.g. ``sens_l2`` is ``gradient`` pooled
    differently), so extraction computes and caches it once. ``applies(model_name, model)``: None
    when the method applies to the model, else the reason. ``scale_params``: per scale, overrides
    of ``params`` (registered defaults are paper scale). ``role``: see ``ROLES``.
    """

    name: str
    explain: Callable[..., Any] = field(compare=False, repr=False)
    description: str = ""
    source: str = ""
    params: tuple[tuple[str, Any], ...] = ()
    needs_layer: bool = False       # needs the model's gradcam_layer
    needs_mask: bool = False        # needs ground-truth masks (the oracle control)
    needs_gradient: bool = True
    role: str = "method"
    aggregation: str = "abs_sum"
    same_as: str | None = None
    applies: Callable[[str, Any], str | None] | None = field(default=None, compare=False, repr=False)
    scale_params: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"method {self.name!r}: role {self.role!r} is not one of {ROLES}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} for method {self.name!r} is not "
                             f"one of {AGGREGATIONS}")

    @property
    def is_control(self) -> bool:
        """A control (random, sobel, oracle): it does not look at the model."""
        return self.role != "method"

    def params_at(self, scale: str | None) -> dict[str, Any]:
        """The parameters at ``scale`` (``seed`` left out: it is the run's, not the method's)."""
        out = {k: v for k, v in self.params if k != "seed"}
        if scale is not None:
            check_scale(scale)
            out.update(dict(dict(self.scale_params).get(scale, ())))
        return out


@dataclass(frozen=True)
class Case:
    """One benchmark case: (dataset, model, method, metric) at a scale.

    ``id`` is what pytest shows in brackets and what ``-k`` matches, e.g. ``digits-simplecnn-grad``.
    """

    metric: str
    dataset: str
    model: str
    method: str | None = None
    scale: str = "small"

    @property
    def id(self) -> str:
        parts = [self.dataset, self.model] + ([self.method] if self.method else [])
        return "-".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "dataset": self.dataset, "model": self.model,
                "method": self.method, "scale": self.scale}


def spec_dict(obj: Any) -> Any:
    """Canonical, JSON-safe form of a spec (callables dropped) for cache keys and meta files."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            if f.compare:
                out[f.name] = spec_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {str(k): spec_dict(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [spec_dict(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise TypeError(f"cannot put {type(obj).__name__} {obj!r} into a cache key")
