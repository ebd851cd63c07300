"""ImageNet-pretrained torchvision networks, evaluated as published (the suite trains nothing).

Ids end in ``_in1k`` (the random-init architectures end in ``_rand``), so neither contains the
other and ``-k alexnet`` selects both families, ``-k alexnet_in1k`` the pretrained one alone.

Weights come through torchvision's weights API (``torchvision.models.get_weight``;
``WeightsEnum.get_state_dict``, i.e. ``torch.hub.load_state_dict_from_url``), which reads torch's
hub cache, ``$TORCH_HOME/hub/checkpoints/<file name of the weights URL>``
(``torch.hub.get_dir()``). The file is downloaded only with ``--download``; when it is absent the
cases are skipped with one line naming the file, where it was looked for and how to get it. A
present file is checked against the sha256 prefix torchvision puts in its name
(``alexnet-owt-7be5be79.pth``): a truncated or corrupt file is an error naming it.

Preprocessing: the dataset side applies the weights' resize and centre crop
(``suite.data.imagenet``); the mean / std normalisation is the first module of the model
(``Normalize``), so images, maps, fills, imputations and pictures all stay in [0, 1] pixel space.
``Normalize`` is a frozen ``BatchNorm2d`` (per-channel affine, no parameters, never updates its
statistics), so LRP treats it as the linear layer it is and relevance reaches the [0, 1] pixels.

A loaded network is memoised per process (one load per file, device and contents), not per case.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from suite.cache import file_sha256

log = logging.getLogger("saliencybench")

#: a test plants files whose sha256 cannot match torchvision's published prefix: it turns this off
VERIFY_HASH = True
IN1K_DATASETS = ("imagenet_val", "imagenette", "imagewoof")


@dataclass(frozen=True)
class Pretrained:
    """One pretrained id: torchvision architecture, weights, Grad-CAM layer, declared layers, the
    metrics it joins at paper scale and the (Imagenette, Imagewoof) accuracy bar margins."""

    id: str
    arch: str
    weights: str                    # "AlexNet_Weights.IMAGENET1K_V1"
    gradcam_layer: str
    metrics: tuple[str, ...]
    layers: tuple[str, ...] | None = None
    build_kwargs: tuple[tuple[str, object], ...] = ()

    def enum(self):
        import torchvision

        return torchvision.models.get_weight(self.weights)


_ALWAYS = ("accuracy", "maps")
_INCEPTION_BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "fc")
PRETRAINED: dict[str, Pretrained] = {p.id: p for p in (
    # Samek et al. 2017 (region perturbation / AOPC)
    Pretrained("alexnet_in1k", "alexnet", "AlexNet_Weights.IMAGENET1K_V1", "net.features.11",
               _ALWAYS + ("aopc",)),
    Pretrained("vgg16_in1k", "vgg16", "VGG16_Weights.IMAGENET1K_V1", "net.features.29",
               _ALWAYS + ("aopc",)),
    # Hooker et al. 2019 / Rong et al. 2022 (ROAD) and insertion / deletion
    Pretrained("resnet50_in1k", "resnet50", "ResNet50_Weights.IMAGENET1K_V1", "net.layer4",
               _ALWAYS + ("road", "insdel")),
    # Adebayo et al. 2018, Fig. 2: cascading randomization block by block, logits first
    Pretrained("inception_in1k", "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1",
               "net.Mixed_7c", _ALWAYS + ("sanity_cascade", "sanity_independent", "sanity_grid"),
               layers=tuple("net." + b for b in _INCEPTION_BLOCKS),
               build_kwargs=(("aux_logits", True), ("transform_input", True),
                             ("init_weights", False))),
)}


class WeightsUnavailable(RuntimeError):
    """The weights file is not in the hub cache (the message says which, where, how to get it)."""


class WeightsError(RuntimeError):
    """The weights file is there but unusable (wrong hash, truncated, wrong architecture)."""


class Normalize(nn.BatchNorm2d):
    """``(x - mean) / std`` per channel as a frozen BatchNorm2d (eval-mode statistics always, no
    parameters): an affine layer that LRP, hooks and ``.to(device)`` treat like any other."""

    def __init__(self, mean, std):
        super().__init__(len(mean), eps=0.0, affine=False, track_running_stats=True)
        self.running_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        self.running_var.copy_(torch.tensor(std, dtype=torch.float32) ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, None, False, 0.0, 0.0)

    def reset_running_stats(self) -> None:   # part of the input pipeline: never randomized
        return None


class Normalized(nn.Module):
    """A network that takes [0, 1] images: ``net(normalize(x))``."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def transforms_of(p: Pretrained) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
    """(resize, crop, mean, std) of the weights' own ``ImageClassification`` transform."""
    t = p.enum().transforms()
    return int(t.resize_size[0]), int(t.crop_size[0]), tuple(t.mean), tuple(t.std)


def architecture(p: Pretrained, num_classes: int = 1000) -> nn.Module:
    """The wrapped torchvision architecture at random init (what ROAR-style retraining trains)."""
    import torchvision

    _, _, mean, std = transforms_of(p)
    kw = dict(p.build_kwargs)
    net = torchvision.models.get_model(p.arch, weights=None, num_classes=num_classes, **kw)
    return Normalized(net, mean, std)


def factory(p: Pretrained):
    def make(num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
        return architecture(p, num_classes)
    make.__name__ = f"make_{p.id}"
    return make


def weights_file(p: Pretrained) -> Path:
    """Where torchvision's loader reads (and would download) the file: the hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(p.enum().url).path).name


def check_hash(path: Path) -> str:
    """The file's sha256; WeightsError unless it starts with the prefix in the file's name."""
    digest = file_sha256(path)
    m = re.search(r"-([a-f0-9]{8,})\.", path.name)
    if VERIFY_HASH and m and not digest.startswith(m.group(1)):
        raise WeightsError(
            f"{path}: sha256 {digest[:12]}... does not start with {m.group(1)}, the prefix in its "
            f"name (size {path.stat().st_size} bytes): the file is truncated or corrupt; delete it "
            "and re-run with --download (or copy an intact one there)")
    return digest


_LOADED: dict[tuple, tuple[nn.Module, str]] = {}


def load(model_id: str, *, device: str | torch.device = "cpu", download: bool = False
         ) -> tuple[nn.Module, str]:
    """(eval-mode wrapped model on ``device`` with the published weights, file sha256), memoised."""
    p = PRETRAINED[model_id]
    path = weights_file(p)
    w = p.enum()
    if not path.is_file():
        if not download:
            raise WeightsUnavailable(
                f"{model_id}: weights file {path.name} not found in the torch hub cache "
                f"{path.parent}; pass --download to fetch it from {w.url}, or copy it there "
                "(or set $TORCH_HOME to the folder whose hub/checkpoints holds it)")
        w.get_state_dict(progress=False, check_hash=True)   # downloads into the hub cache
    stat = path.stat()
    key = (model_id, str(path), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _LOADED:
        digest = check_hash(path)
        try:
            state = w.get_state_dict(progress=False)        # torchvision's path: reads the hub file
        except Exception as err:   # noqa: BLE001  (zip / pickle errors of a damaged file)
            raise WeightsError(f"{path}: cannot be read as a torch state dict ({err})") from None
        model = architecture(p)
        try:
            model.net.load_state_dict(state)
        except RuntimeError as err:
            raise WeightsError(f"{path}: does not fit torchvision's {p.arch}: {err}") from None
        model.to(device).eval()
        for t in model.parameters():
            t.requires_grad_(False)
        log.info("loaded %s weights %s (sha256 %s)", model_id, path, digest[:12])
        _LOADED[key] = (model, digest)
    return _LOADED[key]


def register() -> None:
    from suite.registry import register_model

    for p in PRETRAINED.values():
        register_model(p.id, description=f"torchvision {p.arch}, ImageNet-1k weights {p.weights} "
                       "(normalisation inside the model; inputs in [0, 1])",
                       gradcam_layer=p.gradcam_layer, layers=p.layers, scales=("paper",),
                       min_size=1, datasets=IN1K_DATASETS, metrics=p.metrics)(factory(p))
