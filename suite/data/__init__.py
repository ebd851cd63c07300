"""Datasets: two embedded ones (digits, shapes) and torchvision-backed ones read from disk.

``load(name, ctx)`` returns an ``ImageDataset`` or raises ``DatasetUnavailable`` with a one-line
reason. Results are memoised per process (datasets are cheap to rebuild, so nothing is written).
"""
from __future__ import annotations

from suite.data import digits, imagenet, shapes, torchvision_sets  # noqa: F401  (registers the datasets)
from suite.data.base import Context, DatasetUnavailable, ImageDataset
from suite.registry import DATASETS

imagenet.register()

__all__ = ["Context", "DatasetUnavailable", "ImageDataset", "load"]

_MEMO: dict[tuple, ImageDataset] = {}


def load(name: str, ctx: Context) -> ImageDataset:
    if name not in DATASETS:
        raise KeyError(f"dataset {name!r} is not registered; known: {sorted(DATASETS)}")
    key = (name, ctx.scale, str(ctx.data_root), str(ctx.image_folder), ctx.image_size)
    if key not in _MEMO:
        ds = DATASETS[name].load(ctx.scale, ctx)
        if not isinstance(ds, ImageDataset):
            raise TypeError(f"dataset loader {name!r} returned {type(ds).__name__}, "
                            "not suite.data.ImageDataset")
        if len(ds.x_train) == 0 and not DATASETS[name].eval_only:
            raise ValueError(f"dataset {name!r}: the train split holds no images; a dataset "
                             "that models are trained on needs at least one training image "
                             "(register it with eval_only=True if it is for evaluation only)")
        if ds.name != name:   # the recipe, the accuracy bar and cache paths are found by the id
            raise ValueError(f"dataset loader {name!r} returned an ImageDataset named "
                             f"{ds.name!r}; its name must be its registered id {name!r}")
        _MEMO[key] = ds
    return _MEMO[key]
