"""The case matrix: which (dataset, model[, method]) cases each metric has at a scale.

Built from the registry's tables (``suite.registry``) once every built-in and installed entry is
registered (``load_builtins``). It sits above the registry, the models and the methods, so that
the registry imports nothing of the suite but its specs.
"""
from __future__ import annotations

from suite.registry import DATASETS, METHODS, METRICS, MODELS, _TABLES
from suite.specs import SCALES, Case, DatasetSpec, MethodSpec, ModelSpec, check_scale

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
