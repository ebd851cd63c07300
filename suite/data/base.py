"""The in-memory dataset every metric consumes, and the context that says where data lives."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from suite.specs import check_scale


class DatasetUnavailable(RuntimeError):
    """The dataset's files are not on disk (the message says where it looked and how to get it)."""


def default_data_root() -> Path:
    return Path(os.environ.get("SALIENCYBENCH_DATA", "~/.cache/saliencybench/data")).expanduser()


def default_cache_dir() -> Path:
    return Path(os.environ.get("SALIENCYBENCH_CACHE", ".cache/saliencybench")).expanduser()


@dataclass
class Context:
    """Where and how a run works: scale, device, seeds, data and cache locations."""

    scale: str = "small"
    device: str = "cpu"
    seeds: tuple[int, ...] = (0,)
    data_root: Path = field(default_factory=default_data_root)
    download: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)
    rebuild: bool = False
    image_folder: Path | None = None
    image_size: int = 64
    run_id: str | None = None       # shared by the processes of one run (see ArtifactCache)
    threads: int = 1                # torch threads for training and extraction (suite.training)

    def __post_init__(self) -> None:
        check_scale(self.scale)
        self.data_root = Path(self.data_root).expanduser()
        self.cache_dir = Path(self.cache_dir).expanduser()
        self.seeds = tuple(int(s) for s in self.seeds)
        self._cache = None

    @property
    def cache(self):
        from suite.cache import ArtifactCache

        if self._cache is None:
            self._cache = ArtifactCache(self.cache_dir, rebuild=self.rebuild, run_id=self.run_id)
        return self._cache


@dataclass(eq=False)
class ImageDataset:
    """Images in [0, 1] as float32 (N, C, H, W), int64 labels, optional bool masks (N, 1, H, W)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    masks_train: torch.Tensor | None = None
    masks_test: torch.Tensor | None = None
    fingerprint: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.dtype != torch.float32:
                raise ValueError(f"{self.name}: x_{split} must be float32 (N, C, H, W), "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if y.shape != (x.shape[0],) or y.dtype != torch.int64:
                raise ValueError(f"{self.name}: y_{split} must be int64 ({x.shape[0]},), "
                                 f"got {y.dtype} {tuple(y.shape)}")
            if len(x) == 0 and split == "test":
                raise ValueError(f"{self.name}: the test split holds no images; every dataset "
                                 "needs at least one test image")
            if not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).sum())
                raise ValueError(f"{self.name}: x_{split} holds {bad} NaN or infinite value(s); "
                                 "images must be finite, in [0, 1]")
            if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
                raise ValueError(f"{self.name}: x_{split} must lie in [0, 1], got "
                                 f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name}: y_{split} has labels outside 0..{len(self.classes) - 1}")
            m = getattr(self, f"masks_{split}")
            if m is not None and (m.dtype != torch.bool or m.shape != (x.shape[0], 1, *x.shape[2:])):
                raise ValueError(f"{self.name}: masks_{split} must be bool (N, 1, H, W), "
                                 f"got {m.dtype} {tuple(m.shape)}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: train and test images differ in shape")
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.x_train, self.y_train, self.x_test, self.y_test,
                                           self.masks_train, self.masks_test)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_masks(self) -> bool:
        return self.masks_train is not None

    @property
    def channel_mean(self) -> torch.Tensor:
        """Per-channel mean of the training images (the ROAR fill value)."""
        return self.x_train.mean(dim=(0, 2, 3))

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}"), getattr(self, f"masks_{which}")


def fingerprint(*tensors: torch.Tensor | None) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


def stratified_split(labels: np.ndarray, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: per class, a seeded shuffle, the first share to test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_frac * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def subset(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """The first ``n`` indices of a seeded permutation, sorted (all when n is None or too big)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])
