"""Base-model seeds: which metrics train one base model per ``--seeds`` entry, and the models.

Kept apart from ``suite.artifacts`` (which trains and caches models) and ``suite.checkpoints``
(given networks), which both need it: importing either from the other would be a circle.
"""
from __future__ import annotations

from suite.artifacts import TrainedModel, trained_model
from suite.data.base import Context, ImageDataset


#: the metrics whose ``--seeds`` train one base model per seed: the non-retraining perturbation
#: metrics (per seed s: the base model trained with seed s, the maps on it with seed s, the
#: metric's noise and fills with seed s; ``base_models``). ROAR / KAR keep seeds as retraining
#: seeds of the first seed's base model; the sanity checks, ``maps`` and ``accuracy`` use the
#: first seed's base model only.
BASE_SEED_METRICS = ("aopc", "pixelflip", "insdel", "selectivity", "road")


def trains_base_per_seed(metric: str, model_name: str) -> bool:
    """Whether a case of ``metric`` on ``model_name`` trains a base model per seed (a pretrained
    or ``--checkpoint`` model is one network, whatever the seeds)."""
    from suite.checkpoints import is_given

    return metric in BASE_SEED_METRICS and not is_given(model_name)


def base_models(ctx: Context, ds: ImageDataset, trained: TrainedModel,
                metric: str) -> list[tuple[int, TrainedModel]]:
    """``(seed, model)`` for every seed of the run: for ``BASE_SEED_METRICS`` the base model
    trained with that seed (``trained``, the case's fixture, is the first seed's; the others are
    fetched from the cache or trained), else ``trained`` for every seed (the seeds then vary the
    metric's noise draws of one model, as before). With one seed: ``[(seeds[0], trained)]``."""
    if len(ctx.seeds) == 1 or not trains_base_per_seed(metric, trained.model_name):
        return [(s, trained) for s in ctx.seeds]
    return [(s, trained if s == trained.seed else trained_model(ctx, ds, trained.model_name, s,
                                                                labels=trained.labels))
            for s in ctx.seeds]
