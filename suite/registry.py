"""Name -> spec tables, filled by small ``register_*`` calls. The case matrix built from them
(``cases_for``) is in ``suite.matrix``; this module imports nothing of the suite but its specs.

Ids are what ``pytest -k`` matches, and ``-k`` matches substrings. So within a kind (datasets,
models, methods, metrics) no id may be a substring of another: ``mnist`` would select
``fashionmnist`` too. Registration refuses such an id with an error that names both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from suite.specs import (AGGREGATIONS, ROLES, SCALES, Case, DatasetSpec, MethodSpec, ModelSpec,
                         check_scale)

DATASETS: dict[str, DatasetSpec] = {}
MODELS: dict[str, ModelSpec] = {}
METHODS: dict[str, MethodSpec] = {}


@dataclass(frozen=True)
class MetricSpec:
    """A metric's place in the case matrix.

    ``needs_method``: cases are (dataset, model, method); otherwise (dataset, model).
    ``models``/``datasets``: per scale, the ids the metric runs on by default (None: all valid).
    ``methods``: per scale, the method ids (None: all valid).
    ``needs_layer``: every case needs the model's Grad-CAM layer (rare; methods declare their own).
    ``score``: one sentence, what the score is (for the report; default: the description).
    ``source``: the paper the protocol follows. ``skip(case)``: a reason to skip a collected case
    (e.g. a smoke-scale method subset), applied at collection so nothing is built for it.
    """

    name: str
    description: str = ""
    needs_method: bool = True
    higher_is_better: bool | None = True     # None: the metric has no score (a picture)
    models: dict[str, tuple[str, ...]] | None = None
    datasets: dict[str, tuple[str, ...]] | None = None
    methods: dict[str, tuple[str, ...]] | None = None
    needs_layer: bool = False
    score: str = ""
    source: str = ""
    skip: Callable[[Case], str | None] | None = field(default=None, compare=False, repr=False)


METRICS: dict[str, MetricSpec] = {}

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_TABLES: dict[str, dict[str, Any]] = {"dataset": DATASETS, "model": MODELS, "method": METHODS,
                                      "metric": METRICS}


class RegistryError(ValueError):
    """A registration that would make the case matrix ambiguous or invalid."""


def check_id(kind: str, name: str, *, replace: bool = False) -> None:
    table = _TABLES[kind]
    if not isinstance(name, str) or not _ID.fullmatch(name):   # fullmatch: "$" allows a "\n"
        raise RegistryError(
            f"{kind} id {name!r} is not allowed: use lower-case letters, digits and '_', "
            "starting with a letter (ids appear in pytest node ids and -k expressions)")
    if name in table and not replace:
        raise RegistryError(f"{kind} id {name!r} is already registered "
                            f"({_describe(table[name])}); pick another id or pass replace=True")
    for other in table:
        if other != name and (other in name or name in other):
            raise RegistryError(
                f"{kind} id {name!r} collides with the registered {kind} id {other!r}: "
                f"`pytest -k {min(name, other, key=len)}` would select both. "
                "Choose an id that neither contains nor is contained in another id.")


def _describe(spec: Any) -> str:
    fn = getattr(spec, "load", None) or getattr(spec, "factory", None) or getattr(spec, "explain", None)
    where = getattr(fn, "__module__", None)
    return f"from {where}" if where else getattr(spec, "description", "")


def register_dataset(name: str, *, description: str = "", embedded: bool = False,
                     has_masks: bool = False, scales: Iterable[str] = SCALES,
                     replace: bool = False, eval_only: bool = False) -> Callable:
    """Decorator for ``load(scale, ctx) -> ImageDataset``."""
    def deco(load: Callable) -> Callable:
        check_id("dataset", name, replace=replace)
        DATASETS[name] = DatasetSpec(name, load, description or (load.__doc__ or "").strip(),
                                     embedded, has_masks, tuple(check_scale(s) for s in scales),
                                     eval_only)
        return load
    return deco


def register_model(name: str, *, description: str = "", gradcam_layer: str | None = None,
                   layers: Iterable[str] | None = None, scales: Iterable[str] = SCALES,
                   min_size: int = 8, replace: bool = False,
                   datasets: Iterable[str] | None = None,
                   metrics: Iterable[str] | None = None) -> Callable:
    """Decorator for ``factory(num_classes, in_shape) -> nn.Module`` (a checkpoint to evaluate
    instead of training: ``suite.register_model(..., checkpoint=PATH)``)."""
    def deco(factory: Callable) -> Callable:
        check_id("model", name, replace=replace)
        MODELS[name] = ModelSpec(name, factory, description or (factory.__doc__ or "").strip(),
                                 gradcam_layer, tuple(layers) if layers is not None else None,
                                 tuple(check_scale(s) for s in scales), min_size,
                                 None if datasets is None else tuple(datasets),
                                 None if metrics is None else tuple(metrics))
        return factory
    return deco


def register_method(name: str, *, description: str = "", source: str = "",
                    params: dict[str, Any] | None = None, needs_layer: bool = False,
                    needs_mask: bool = False, needs_gradient: bool = True, role: str = "method",
                    aggregation: str = "abs_sum", same_as: str | None = None,
                    applies: Callable[[str, Any], str | None] | None = None,
                    scale_params: dict[str, dict[str, Any]] | None = None,
                    replace: bool = False) -> Callable:
    """Decorator for ``explain(model, x, target, **params) -> Tensor``: one ``MethodSpec`` holds
    every fact about the method (see its docstring for the fields)."""
    if aggregation not in AGGREGATIONS:     # before the decorator is applied: a usage error
        raise ValueError(f"aggregation {aggregation!r} for method {name!r} is not one of "
                         f"{AGGREGATIONS}")
    if role not in ROLES:
        raise ValueError(f"role {role!r} for method {name!r} is not one of {ROLES}")

    def deco(explain: Callable) -> Callable:
        check_id("method", name, replace=replace)
        if same_as is not None and same_as != name and same_as not in METHODS:
            raise RegistryError(f"method {name!r}: same_as={same_as!r} is not a registered method")
        for scale in scale_params or {}:
            check_scale(scale)
        METHODS[name] = MethodSpec(
            name, explain, description or (explain.__doc__ or "").strip(), source,
            tuple(sorted((params or {}).items())), needs_layer, needs_mask, needs_gradient, role,
            aggregation, same_as, applies,
            tuple(sorted((k, tuple(sorted(v.items()))) for k, v in (scale_params or {}).items())))
        return explain
    return deco


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    check_id("metric", spec.name, replace=replace)
    METRICS[spec.name] = spec
    return spec


def unregister(kind: str, name: str) -> None:
    """Remove an entry (tests and interactive use)."""
    _TABLES[kind].pop(name, None)
