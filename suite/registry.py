"""Name -> spec tables, filled by small ``register_*`` calls, and ``cases_for(metric, scale)``.

Ids are what ``pytest -k`` matches, and ``-k`` matches substrings. So within a kind (datasets,
models, methods, metrics) no id may be a substring of another: ``mnist`` would select
``fashionmnist`` too. Registration refuses such an id with an error that names both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from suite.specs import SCALES, Case, DatasetSpec, MethodSpec, ModelSpec, check_scale

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
    """

    name: str
    description: str = ""
    needs_method: bool = True
    higher_is_better: bool = True
    models: dict[str, tuple[str, ...]] | None = None
    datasets: dict[str, tuple[str, ...]] | None = None
    methods: dict[str, tuple[str, ...]] | None = None
    needs_layer: bool = False


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
                   metrics: Iterable[str] | None = None, checkpoint=None) -> Callable:
    """Decorator for ``factory(num_classes, in_shape) -> nn.Module``.

    ``checkpoint``: a state dict file (``torch.save(model.state_dict(), PATH)``) to evaluate
    instead of training the model, the API form of ``--checkpoint NAME=PATH`` (which overrides
    it). Read at once with ``weights_only=True``: a missing, corrupt or pickled-object file is a
    ValueError naming it here; a wrong architecture one before any case runs
    (``suite.checkpoints``)."""
    def deco(factory: Callable) -> Callable:
        from suite import checkpoints

        check_id("model", name, replace=replace)
        spec = ModelSpec(name, factory, description or (factory.__doc__ or "").strip(),
                         gradcam_layer, tuple(layers) if layers is not None else None,
                         tuple(check_scale(s) for s in scales), min_size,
                         None if datasets is None else tuple(datasets),
                         None if metrics is None else tuple(metrics))
        old = MODELS.get(name)
        MODELS[name] = spec
        try:
            checkpoints.register(name, checkpoint)
        except ValueError:
            if old is None:
                MODELS.pop(name)
            else:
                MODELS[name] = old
            raise
        return factory
    return deco


def register_method(name: str, *, description: str = "", source: str = "",
                    params: dict[str, Any] | None = None, needs_layer: bool = False,
                    needs_mask: bool = False, needs_gradient: bool = True,
                    is_control: bool = False, replace: bool = False) -> Callable:
    """Decorator for ``explain(model, x, target, **params) -> Tensor``."""
    def deco(explain: Callable) -> Callable:
        check_id("method", name, replace=replace)
        METHODS[name] = MethodSpec(name, explain, description or (explain.__doc__ or "").strip(),
                                   source, tuple(sorted((params or {}).items())), needs_layer,
                                   needs_mask, needs_gradient, is_control)
        return explain
    return deco


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    check_id("metric", spec.name, replace=replace)
    METRICS[spec.name] = spec
    return spec


def unregister(kind: str, name: str) -> None:
    """Remove an entry (tests and interactive use)."""
    _TABLES[kind].pop(name, None)


_BUILTIN: dict[str, frozenset[str]] = {}
ENTRY_POINT_GROUP = "saliencybench"


def load_builtins() -> None:
    """Import the modules that register the built-in datasets, models, methods and metrics, then
    the modules installed packages declare in the ``saliencybench`` entry-point group."""
    import importlib

    if _BUILTIN:
        return
    for mod in ("suite.data", "suite.models", "suite.methods", "suite.metrics"):
        importlib.import_module(mod)
    _BUILTIN.update({kind: frozenset(table) for kind, table in _TABLES.items()})
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def is_builtin(kind: str, name: str) -> bool:
    return name in _BUILTIN.get(kind, frozenset())


def method_applies(method: MethodSpec, model: ModelSpec, dataset: DatasetSpec) -> str | None:
    """None when ``method`` applies to (model, dataset), else the reason it does not."""
    if method.needs_layer and model.gradcam_layer is None:
        return f"{method.name} needs a convolutional layer and {model.name} declares none"
    if method.needs_mask and not dataset.has_masks:
        return f"{method.name} needs ground-truth masks and {dataset.name} has none"
    from suite.methods import applies   # method-specific limits (e.g. LRP rules per layer type)

    return applies(method.name, model.name)


def pairs(model: ModelSpec, dataset: DatasetSpec, metric: str) -> bool:
    """Whether ``model`` joins ``metric`` on ``dataset``: a model that lists its datasets (e.g. a
    1000-class pretrained network: ImageNet-labelled data only) pairs with those alone, an
    evaluation-only dataset (no training split) with such models alone."""
    if model.metrics is not None and metric not in model.metrics:
        return False
    if model.datasets is not None:
        return dataset.name in model.datasets
    return not dataset.eval_only


def cases_for(metric: str, scale: str) -> list[Case]:
    """The valid (dataset, model[, method]) cases of ``metric`` at ``scale``, in a stable order."""
    load_builtins()
    check_scale(scale)
    if metric not in METRICS:
        raise KeyError(f"metric {metric!r} is not registered; known: {sorted(METRICS)}")
    m = METRICS[metric]

    def pick(kind: str, table: dict, chosen: dict | None) -> list:
        """The metric's chosen built-ins at this scale, plus every user-registered entry."""
        names = chosen.get(scale) if chosen else None
        valid = [s for s in table.values() if scale in getattr(s, "scales", SCALES)]
        if names is None:
            return valid
        return [table[n] for n in names if n in table] + \
            [s for s in valid if not is_builtin(kind, s.name) and s.name not in names]

    out: list[Case] = []
    for ds in pick("dataset", DATASETS, m.datasets):
        for mo in pick("model", MODELS, m.models):
            if m.needs_layer and mo.gradcam_layer is None or not pairs(mo, ds, metric):
                continue
            if not m.needs_method:
                out.append(Case(metric, ds.name, mo.name, None, scale))
                continue
            for me in pick("method", METHODS, m.methods):
                if method_applies(me, mo, ds) is None:
                    out.append(Case(metric, ds.name, mo.name, me.name, scale))
    return out
