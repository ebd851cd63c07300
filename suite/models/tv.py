"""torchvision architectures adapted to the suite's datasets (any channel count, small images).

Weights are always randomly initialised here (``weights=None``): the suite trains its models, and
no run needs a download. The adapter repeats a single input channel to three and upsamples images
smaller than the architecture's minimum side.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

#: arch -> (minimum input side, Grad-CAM layer inside the wrapped net, extra constructor kwargs)
ARCHS: dict[str, tuple[int, str, dict]] = {
    "alexnet": (63, "features.11", {}),
    "vgg16": (32, "features.29", {}),
    "resnet18": (32, "layer4", {}),
    "inception_v3": (75, "Mixed_7c", {"aux_logits": False, "init_weights": True}),
}


class ToThreeChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class TorchvisionAdapter(nn.Module):
    def __init__(self, arch: str, num_classes: int, in_shape: tuple[int, int, int]):
        super().__init__()
        import torchvision

        if arch not in ARCHS:
            raise ValueError(f"torchvision arch {arch!r} is not adapted; choose from {sorted(ARCHS)}")
        c, h, w = in_shape
        if c not in (1, 3):
            raise ValueError(f"{arch} adapter takes 1 or 3 input channels, got {c}")
        min_side, _, extra = ARCHS[arch]
        side = max(min_side, h, w)
        self.adapt = nn.Sequential(OrderedDict(
            channels=ToThreeChannels(),
            resize=nn.Upsample(size=(side, side), mode="bilinear", align_corners=False)
            if (h, w) != (side, side) else nn.Identity(),
        ))
        self.net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapt(x))


def make_torchvision(arch: str):
    def factory(num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
        return TorchvisionAdapter(arch, num_classes, in_shape)
    factory.__name__ = f"make_{arch}"
    return factory
