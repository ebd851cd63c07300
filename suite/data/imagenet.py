"""ImageNet-labelled data for the models the suite does not train (ImageNet-1k weights).

Three sources, each read from disk under the data root (never downloaded: ImageNet has no public
download, and the Imagenette / Imagewoof archives come from fast.ai):

* ``imagenet_val`` (``imagenet`` would be inside ``imagenette`` for ``-k``): the ILSVRC2012 validation set, in the two layouts people have. A torchvision
  ``ImageNet`` root (``<root>/imagenet/ILSVRC2012_devkit_t12.tar.gz`` or its parsed ``meta.bin``,
  and ``val/<wnid>/*.JPEG``), or plain class sub-folders named by WordNet id
  (``<root>/imagenet/val/n01440764/...``). Either way the label of a folder is the index of its
  WordNet id in the sorted list of the 1000 ILSVRC2012 ids (``imagenet_wnids.txt``), which is the
  class order of every torchvision ImageNet-1k model (checked against the weights' category names
  in the tests), so a subset of folders keeps the true indices.
* ``imagenette``: fast.ai's 10 easy ImageNet classes, ``imagenette2-320`` (preferred: the Samek et
  al. replication resized the 320 px release to 224) or ``imagenette2-160``. The suite-trained
  models use the 10-class ``imagenette`` loader (``torchvision_sets``); a 1000-class pretrained
  model gets this view of the same files: labels are the ImageNet-1k indices of the 10 WordNet ids.
* ``imagewoof``: fast.ai's 10 dog breeds (``imagewoof2-320`` or ``imagewoof2-160``).

Images go through the weights' own preprocessing up to (not including) the normalisation:
resize the shorter side to ``resize`` (bilinear, antialiased, as torchvision's
``ImageClassification`` transform), centre crop ``crop``, scale to [0, 1]. The mean / std
normalisation lives inside the model wrapper (``suite.models.pretrained``), so every map, fill,
imputation and picture stays in [0, 1] pixel space.

These views are evaluation-only: the training split is empty (no suite model trains on them).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from suite.data.base import Context, DatasetUnavailable, ImageDataset, subset

log = logging.getLogger("saliencybench")

#: test images of an ImageNet-labelled view per scale (aopc at paper scale uses 1000, Samek's
#: replication; the full split is still streamed for the accuracy at paper scale)
TEST_IMAGES = {"smoke": 32, "small": 256, "paper": 1000}

IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
                    "n03417042", "n03425413", "n03445777", "n03888257")
IMAGEWOOF_WNIDS = ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294",
                   "n02099601", "n02105641", "n02111889", "n02115641")
_EXTS = (".jpeg", ".jpg", ".png")


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 WordNet ids in class-index order (sorted)."""
    ids = tuple((Path(__file__).with_name("imagenet_wnids.txt")).read_text().split())
    assert len(ids) == 1000 and list(ids) == sorted(ids)
    return ids


def wnid_index(wnid: str) -> int:
    table = {w: i for i, w in enumerate(wnids())}
    if wnid not in table:
        raise KeyError(f"{wnid!r} is not one of the 1000 ILSVRC2012 WordNet ids")
    return table[wnid]


@lru_cache(maxsize=1)
def categories() -> tuple[str, ...]:
    """torchvision's 1000 ImageNet-1k category names (the class names of the views)."""
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def wnid_samples(folder: Path, allowed: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """(file, ImageNet-1k index) for every image in ``folder/<wnid>/``, sorted by path."""
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if allowed is not None and sub.name not in allowed:
            continue
        try:
            idx = wnid_index(sub.name)
        except KeyError:
            raise DatasetUnavailable(f"{folder}: sub-folder {sub.name!r} is not an ILSVRC2012 "
                                     "WordNet id (expected folders like n01440764)") from None
        out += [(str(f), idx) for f in sorted(sub.iterdir()) if f.suffix.lower() in _EXTS]
    return out


def imagenet_val_samples(root: Path) -> list[tuple[str, int]]:
    """The validation files of a torchvision ImageNet root or of a folder of wnid sub-folders."""
    val = root / "val"
    devkit = root / "ILSVRC2012_devkit_t12.tar.gz"
    if not val.is_dir() and (root / "ILSVRC2012_img_val.tar").exists() and devkit.exists():
        import torchvision   # extracts the tar into val/<wnid>/ (torchvision's own layout)

        torchvision.datasets.ImageNet(str(root), split="val")
    if not val.is_dir():
        raise DatasetUnavailable(
            f"imagenet: ILSVRC2012 validation images not found under {root} (looked for "
            f"{val}/<wnid>/*.JPEG, or ILSVRC2012_img_val.tar with ILSVRC2012_devkit_t12.tar.gz for "
            "torchvision to unpack); ImageNet cannot be downloaded automatically: get it from "
            "image-net.org and point --data-root / $SALIENCYBENCH_DATA at the folder holding imagenet/")
    samples = wnid_samples(val)
    if not samples:
        raise DatasetUnavailable(f"imagenet: no images in the class sub-folders of {val}")
    return samples


def fastai_samples(name: str, root: Path, split: str) -> tuple[list[tuple[str, int]], str]:
    """(files, release) of an Imagenette / Imagewoof split, 320 px release preferred."""
    stem, allowed = {"imagenette": ("imagenette2", IMAGENETTE_WNIDS),
                     "imagewoof": ("imagewoof2", IMAGEWOOF_WNIDS)}[name]
    for px in ("320", "160"):
        folder = root / f"{stem}-{px}" / split
        if folder.is_dir():
            samples = wnid_samples(folder, allowed)
            if samples:
                return samples, f"{stem}-{px}"
    raise DatasetUnavailable(
        f"{name}: {stem}-320/{split} (or {stem}-160/{split}) with WordNet-id class folders not "
        f"found under {root}; get https://s3.amazonaws.com/fast-ai-imageclas/{stem}-320.tgz, unpack "
        f"it into {root}, or point --data-root / $SALIENCYBENCH_DATA at a folder holding {name}/")


def test_samples(name: str, ctx: Context) -> list[tuple[str, int]]:
    """Every test (validation) file of the ImageNet-labelled dataset ``name``."""
    root = ctx.data_root / name
    if name == "imagenet_val":
        return imagenet_val_samples(ctx.data_root / "imagenet")
    if name not in ("imagenette", "imagewoof"):
        raise KeyError(f"{name!r} has no ImageNet-1k labels; choose imagenet_val, imagenette or "
                       "imagewoof")
    if name == "imagenette" and ctx.download and not (root / "imagenette2-320").is_dir():
        import torchvision

        torchvision.datasets.Imagenette(str(root), split="val", size="320px", download=True)
    return fastai_samples(name, root, "val")[0]


def decode(samples: list[tuple[str, int]], resize: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, crop, crop) float32 in [0, 1] and int64 labels: torchvision's ImageClassification
    steps before the normalisation (shorter side to ``resize``, bilinear + antialias, centre crop)."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    xs = np.empty((len(samples), 3, crop, crop), dtype=np.float32)
    for i, (path, _) in enumerate(samples):
        with Image.open(path) as im:
            im = TF.resize(im.convert("RGB"), [resize], interpolation=InterpolationMode.BILINEAR,
                           antialias=True)
            im = TF.center_crop(im, [crop])
            xs[i] = TF.pil_to_tensor(im).numpy().astype(np.float32) / 255.0
    return torch.from_numpy(xs), torch.tensor([c for _, c in samples], dtype=torch.int64)


def load_view(name: str, ctx: Context, resize: int = 256, crop: int = 224) -> ImageDataset:
    """``name`` (imagenet_val, imagenette, imagewoof) as an ImageNet-1k dataset preprocessed to
    ``resize`` / ``crop``; the test split is a seeded subset of TEST_IMAGES[scale] files."""
    from suite.cache import TORCH

    samples = test_samples(name, ctx)
    pick = [samples[i] for i in subset(len(samples), TEST_IMAGES[ctx.scale])]
    stats = [(p, c, *(lambda s: (s.st_size, s.st_mtime_ns))(Path(p).stat())) for p, c in pick]
    spec = {"dataset": name, "labels": "in1k", "resize": resize, "crop": crop, "files": stats}
    v = ctx.cache.fetch("decoded", f"{name}-in1k-{crop}", spec,
                        lambda: dict(zip(("x", "y"), decode(pick, resize, crop))), TORCH).value
    empty_x = torch.empty((0, 3, crop, crop), dtype=torch.float32)
    return ImageDataset(name, empty_x, torch.empty(0, dtype=torch.int64), v["x"], v["y"],
                        categories())


_VIEWS: dict[tuple, ImageDataset] = {}


def view(name: str, ctx: Context, resize: int, crop: int) -> ImageDataset:
    """``load_view`` memoised per process."""
    key = (name, ctx.scale, str(ctx.data_root), str(ctx.cache_dir), resize, crop)
    if key not in _VIEWS:
        _VIEWS[key] = load_view(name, ctx, resize, crop)
    return _VIEWS[key]


def register() -> None:
    from suite.registry import register_dataset

    register_dataset("imagenet_val", eval_only=True, scales=("paper",),
                     description="ILSVRC2012 validation set, ImageNet-1k labels, 224 px (for "
                     "pretrained models only; from disk, no download)")(
        lambda scale, ctx=None: load_view("imagenet_val", ctx or Context(scale=scale)))
    register_dataset("imagewoof", eval_only=True, scales=("paper",),
                     description="Imagewoof (10 ImageNet dog breeds) with ImageNet-1k labels, 224 "
                     "px (for pretrained models only; from disk)")(
        lambda scale, ctx=None: load_view("imagewoof", ctx or Context(scale=scale)))
