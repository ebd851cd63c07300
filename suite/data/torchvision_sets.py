"""MNIST, Fashion-MNIST, CIFAR-10, Imagenette and any image folder, through torchvision.

Files are looked for under ``<data root>/<name>`` (``--data-root`` or ``$SALIENCYBENCH_DATA``) and
downloaded only when ``--download`` is given. When they are absent, ``DatasetUnavailable`` says
where the loader looked and how to get the data; the pytest plugin turns it into a skip.
Decoded folder datasets (Imagenette, image folders) are cached as tensors in the artifact cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from suite.data.base import Context, DatasetUnavailable, ImageDataset, stratified_split, subset
from suite.registry import register_dataset

#: (train, test) image counts per scale; None = the whole split
SUBSETS = {"smoke": (2000, 500), "small": (10000, 2000), "paper": (None, None)}


def _need(ctx: Context | None) -> Context:
    return ctx if ctx is not None else Context()


def _unavailable(name: str, root: Path, what: str, err: Exception | None = None) -> DatasetUnavailable:
    why = "" if err is None or "not found" in str(err).lower() else f" ({err})"
    return DatasetUnavailable(
        f"{name}: {what} not found under {root}{why}; pass --download to fetch it, "
        f"or point --data-root / $SALIENCYBENCH_DATA at a folder holding it")


def _finish(name: str, scale: str, x_tr, y_tr, x_te, y_te, classes) -> ImageDataset:
    n_tr, n_te = SUBSETS[scale]
    i_tr, i_te = subset(len(y_tr), n_tr), subset(len(y_te), n_te)
    return ImageDataset(name, x_tr[i_tr].contiguous(), y_tr[i_tr], x_te[i_te].contiguous(),
                        y_te[i_te], tuple(classes))


def _mnist_like(cls_name: str, name: str, scale: str, ctx: Context | None) -> ImageDataset:
    import torchvision

    ctx = _need(ctx)
    root = ctx.data_root / name
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(str(root), train=True, download=ctx.download)
        test = cls(str(root), train=False, download=ctx.download)
    except (RuntimeError, OSError) as err:  # "Dataset not found ...", or a failed --download
        raise _unavailable(name, root, f"{cls_name} idx files ({cls_name}/raw/*-ubyte)", err) from None
    to_x = lambda d: (d.data.to(torch.float32) / 255.0)[:, None]  # noqa: E731
    return _finish(name, scale, to_x(train), train.targets.to(torch.int64), to_x(test),
                   test.targets.to(torch.int64), train.classes)


@register_dataset("mnist", description="MNIST handwritten digits, 1x28x28 (torchvision; download)")
def load_mnist(scale: str, ctx: Context | None = None) -> ImageDataset:
    return _mnist_like("MNIST", "mnist", scale, ctx)


@register_dataset("fashion", description="Fashion-MNIST, 1x28x28 (torchvision; download)")
def load_fashion(scale: str, ctx: Context | None = None) -> ImageDataset:
    return _mnist_like("FashionMNIST", "fashion", scale, ctx)


@register_dataset("cifar10", description="CIFAR-10, 3x32x32 (torchvision; download)")
def load_cifar10(scale: str, ctx: Context | None = None) -> ImageDataset:
    import torchvision

    ctx = _need(ctx)
    root = ctx.data_root / "cifar10"
    try:
        train = torchvision.datasets.CIFAR10(str(root), train=True, download=ctx.download)
        test = torchvision.datasets.CIFAR10(str(root), train=False, download=ctx.download)
    except (RuntimeError, OSError) as err:  # "Dataset not found or corrupted.", failed download
        raise _unavailable("cifar10", root, "cifar-10-batches-py", err) from None
    to_x = lambda d: torch.from_numpy(d.data).permute(0, 3, 1, 2).to(torch.float32) / 255.0  # noqa: E731
    return _finish("cifar10", scale, to_x(train), torch.tensor(train.targets, dtype=torch.int64),
                   to_x(test), torch.tensor(test.targets, dtype=torch.int64), train.classes)


def _decode(samples: list[tuple[str, int]], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode image files to (N, 3, side, side) float32 in [0, 1] (resize shorter side, centre crop)."""
    from PIL import Image

    xs = np.empty((len(samples), 3, side, side), dtype=np.float32)
    for i, (path, _) in enumerate(samples):
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = side / min(w, h)
            im = im.resize((max(side, round(w * s)), max(side, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
            xs[i] = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy(xs), torch.tensor([c for _, c in samples], dtype=torch.int64)


def _cached_decode(ctx: Context, name: str, samples: list[tuple[str, int]], side: int):
    """Decoded tensors, cached by file list (paths, sizes, mtimes) and side."""
    from suite.cache import TORCH

    stats = [(p, c, *(lambda s: (s.st_size, s.st_mtime_ns))(Path(p).stat())) for p, c in samples]
    spec = {"dataset": name, "side": side, "files": stats}
    fetched = ctx.cache.fetch("decoded", name, spec, lambda: dict(zip(("x", "y"), _decode(samples, side))),
                              TORCH)
    return fetched.value["x"], fetched.value["y"]


IMAGENETTE_SIDE = {"smoke": 64, "small": 64, "paper": 128}


@register_dataset("imagenette", description="Imagenette (10 ImageNet classes), 3x64x64 "
                  "(128 at paper scale; torchvision; download)")
def load_imagenette(scale: str, ctx: Context | None = None) -> ImageDataset:
    import torchvision

    ctx = _need(ctx)
    root = ctx.data_root / "imagenette"
    try:
        train = torchvision.datasets.Imagenette(str(root), split="train", size="160px",
                                                download=ctx.download)
        val = torchvision.datasets.Imagenette(str(root), split="val", size="160px", download=False)
    except (RuntimeError, OSError) as err:   # absent, a partial or a failed download
        raise _unavailable("imagenette", root, "imagenette2-160/{train,val}", err) from None
    n_tr, n_te = SUBSETS[scale]
    tr = [train._samples[i] for i in subset(len(train._samples), n_tr)]
    te = [val._samples[i] for i in subset(len(val._samples), n_te)]
    side = IMAGENETTE_SIDE[scale]
    x_tr, y_tr = _cached_decode(ctx, "imagenette-train", tr, side)
    x_te, y_te = _cached_decode(ctx, "imagenette-val", te, side)
    classes = [c[0] if isinstance(c, tuple) else c for c in train.classes]
    return ImageDataset("imagenette", x_tr, y_tr, x_te, y_te, tuple(classes))


@register_dataset("folder", description="any image folder (--image-folder; class per sub-folder; "
                  "train/ and val/ or test/ sub-trees used when present, else a stratified 80/20 split)")
def load_folder(scale: str, ctx: Context | None = None) -> ImageDataset:
    import torchvision

    ctx = _need(ctx)
    if ctx.image_folder is None:
        raise DatasetUnavailable("folder: no image folder given; pass --image-folder PATH "
                                 "(one sub-folder per class)")
    root = Path(ctx.image_folder).expanduser()
    if not root.is_dir():
        raise DatasetUnavailable(f"folder: {root} is not a directory; pass --image-folder PATH")
    side = ctx.image_size
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    try:
        if (root / "train").is_dir() and test_dir is not None:
            train = torchvision.datasets.ImageFolder(str(root / "train"))
            test = torchvision.datasets.ImageFolder(str(test_dir))
            if test.classes != train.classes:
                raise DatasetUnavailable(f"folder: class sub-folders of {root / 'train'} and "
                                         f"{test_dir} differ: {train.classes} vs {test.classes}")
            tr, te, classes = train.samples, test.samples, train.classes
        else:
            full = torchvision.datasets.ImageFolder(str(root))
            labels = np.array(full.targets)
            i_tr, i_te = stratified_split(labels, 0.2, seed=0)
            tr, te, classes = [full.samples[i] for i in i_tr], [full.samples[i] for i in i_te], full.classes
    except FileNotFoundError as err:  # no class folders or no valid images
        raise DatasetUnavailable(f"folder: {root}: {err}") from None
    if len(classes) < 2:
        raise DatasetUnavailable(f"folder: {root} has {len(classes)} class folder(s); need >= 2")
    n_tr, n_te = SUBSETS[scale]
    tr = [tr[i] for i in subset(len(tr), n_tr)]
    te = [te[i] for i in subset(len(te), n_te)]
    x_tr, y_tr = _cached_decode(ctx, "folder-train", tr, side)
    x_te, y_te = _cached_decode(ctx, "folder-test", te, side)
    return ImageDataset("folder", x_tr, y_tr, x_te, y_te, tuple(classes))
