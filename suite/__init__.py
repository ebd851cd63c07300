"""saliencybench: a pytest benchmark of the faithfulness of image attribution methods.

The public API is what a user needs to bring their own method, model or dataset into every case
(see the README, "Evaluate your own method" and after). Register from your own ``conftest.py``, from a
module loaded with ``pytest -p your.module``, or from an installed package's entry point in the
group ``saliencybench``. A registered entry takes part in every metric it is valid for, next to the
built-in ones, with caching, reporting and the random-baseline check.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["register_method", "register_model", "register_dataset", "register_recipe",
           "register_metric", "CaseResult", "Check", "Picture", "ImageDataset", "Context",
           "DatasetUnavailable", "TrainSpec"]


def register_method(name: str, *, aggregation: str = "abs_sum", description: str = "",
                    source: str = "", params: dict[str, Any] | None = None,
                    needs_layer: bool = False, needs_gradient: bool = True,
                    scale_params: dict[str, dict[str, Any]] | None = None) -> Callable:
    """Decorator: ``explain(model, x, target, **params) -> Tensor (N, C|1, H, W)``.

    ``aggregation`` (abs_sum, l2, linf or sum) pools channels for pixel-level metrics.
    ``needs_layer``: the method receives ``layer=<the model's Grad-CAM layer name>``.
    ``needs_gradient=False`` for gradient-free methods (they are still valid for ROAR, ROAD and
    the perturbation metrics). ``scale_params``: per-scale overrides of ``params``.
    """
    from suite.methods.base import method
    from suite.matrix import load_builtins

    load_builtins()
    return method(name, aggregation=aggregation, description=description or name,
                  source=source or "user-registered", params=params, needs_layer=needs_layer,
                  needs_gradient=needs_gradient, scale_params=scale_params)


def register_model(name: str, *, gradcam_layer: str | None = None, layers=None,
                   description: str = "", min_size: int = 8, checkpoint=None,
                   replace: bool = False) -> Callable:
    """Decorator: ``factory(num_classes, in_shape) -> nn.Module``.

    ``gradcam_layer``: dotted name of the module whose output Grad-CAM uses (None: methods that
    need a layer are left out for this model). ``layers``: dotted names input -> output, the order
    the sanity checks randomize in (None: every module with parameters). ``checkpoint``: a state
    dict file evaluated instead of training the model (the API form of ``--checkpoint``; read at
    once with ``weights_only=True``, a bad file is a ValueError naming it). ``replace=True``
    re-registers an id (e.g. a built-in architecture with your weights).
    """
    from suite import checkpoints
    from suite.matrix import load_builtins
    from suite.registry import MODELS
    from suite.registry import register_model as _register

    load_builtins()

    def deco(factory: Callable) -> Callable:
        old = MODELS.get(name)
        _register(name, description=description, gradcam_layer=gradcam_layer, layers=layers,
                  min_size=min_size, replace=replace)(factory)
        try:
            checkpoints.register(name, checkpoint)
        except ValueError:       # a bad file: the id stays free (or keeps its earlier entry)
            if old is None:
                MODELS.pop(name)
            else:
                MODELS[name] = old
            raise
        return factory
    return deco


def register_dataset(name: str, *, description: str = "", has_masks: bool = False) -> Callable:
    """Decorator: ``load(scale, ctx) -> ImageDataset`` (raise ``DatasetUnavailable`` to skip)."""
    from suite.matrix import load_builtins
    from suite.registry import register_dataset as _register

    load_builtins()
    return _register(name, description=description, embedded=False, has_masks=has_masks)


def register_recipe(dataset: str, model: str = "*", *, min_test_acc: float,
                    train: "TrainSpec | None" = None) -> None:
    """How to train ``model`` (or any model: "*") on ``dataset``, and the accuracy it must reach."""
    from suite.training import register_recipe as _register

    _register(dataset, model, min_test_acc=min_test_acc, train=train)


def register_metric(name: str, *, description: str = "", score: str = "",
                    higher_is_better: bool | None = True, needs_method: bool = True,
                    source: str = "", datasets: dict[str, tuple[str, ...]] | None = None,
                    models: dict[str, tuple[str, ...]] | None = None,
                    methods: dict[str, tuple[str, ...]] | None = None):
    """Register metric ``name`` (its cases: a ``cases/``-style file whose test is marked
    ``@pytest.mark.metric(name)``; its computation: a function returning ``suite.CaseResult``).

    ``datasets`` / ``models`` / ``methods``: per scale, the ids its cases run on (a scale left
    out: every valid one). ``higher_is_better=None``: the metric has no score (a picture).
    """
    from suite.matrix import load_builtins
    from suite.registry import MetricSpec
    from suite.registry import register_metric as _register

    load_builtins()
    return _register(MetricSpec(name, description or name, needs_method, higher_is_better,
                                models, datasets, methods, score=score,
                                source=source or "user-registered"))


def __getattr__(name: str) -> Any:
    if name in ("CaseResult", "Check", "Picture"):
        import suite.contract as contract

        return getattr(contract, name)
    if name in ("ImageDataset", "Context", "DatasetUnavailable"):
        import suite.data as data

        return getattr(data, name)
    if name == "TrainSpec":
        from suite.specs import TrainSpec

        return TrainSpec
    raise AttributeError(f"module 'suite' has no attribute {name!r}")
