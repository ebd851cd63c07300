"""Model families: the suite's own small classifiers and adapted torchvision architectures.

``build_model(name, num_classes, in_shape, seed)`` creates a freshly initialised model whose
weights depend only on the seed. ``layer_names(model, name)`` gives the layers from input to
output (the order the sanity checks randomize in, reversed for the cascading test).
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from suite.models.small import CAMCNN, CBAMCNN, MLP, WARN, ResidualAttentionNet, ResNet8, SimpleCNN
from suite.models import pretrained as _pretrained
from suite.models.tv import ARCHS, make_torchvision
from suite.registry import MODELS, register_model

__all__ = ["build_model", "layer_names", "gradcam_module", "SimpleCNN", "MLP", "ResNet8",
           "CAMCNN", "CBAMCNN", "ResidualAttentionNet", "WARN"]

register_model("simplecnn", description="3 conv layers (16-32-64) + 2 fully connected",
               gradcam_layer="features.relu3",
               layers=("features.conv1", "features.conv2", "features.conv3",
                       "classifier.fc1", "classifier.fc2"))(SimpleCNN)
register_model("mlp", description="3-layer perceptron (no feature map: no Grad-CAM)",
               gradcam_layer=None, layers=("net.fc1", "net.fc2", "net.fc3"))(MLP)
register_model("resnet8", description="ResNet-8: stem + 3 basic blocks with BatchNorm and skips",
               gradcam_layer="layer3",
               layers=("stem", "layer1", "layer2", "layer3", "head.fc"))(ResNet8)
register_model("camcnn", description="3 conv layers + global average pooling + linear (CAM)",
               gradcam_layer="features.relu3",
               layers=("features.conv1", "features.conv2", "features.conv3", "classifier.fc"))(CAMCNN)
register_model("cbamcnn", description="3 conv layers each followed by CBAM attention, GAP head",
               gradcam_layer="features.cbam3",
               layers=("features.conv1", "features.cbam1", "features.conv2", "features.cbam2",
                       "features.conv3", "features.cbam3", "classifier.fc"))(CBAMCNN)
register_model("resattn", description="residual attention network (Wang et al. 2017): two "
               "attention modules, (1 + soft mask) x trunk, pre-activation residual units",
               gradcam_layer="unit3",
               layers=("stem", "unit1", "attention1", "unit2", "attention2", "unit3",
                       "head"))(ResidualAttentionNet)
register_model("warn", description="wide residual network with attention (Rodriguez et al. 2018, "
               "\"Attend and rectify\"): attention heads after groups 2 and 3, their outputs and the "
               "backbone's combined by softmax gates",
               gradcam_layer="post",
               layers=("stem", "group1", "group2", "attention2", "group3", "post", "attention3",
                       "head", "gate"))(WARN)

#: random-init ids end in _rand, the ImageNet-pretrained ones (suite.models.pretrained) in _in1k:
#: neither id contains the other, so `-k alexnet` selects both and `-k alexnet_rand` one
_TV_IDS = {"alexnet": "alexnet_rand", "vgg16": "vgg16_rand", "resnet18": "resnet18_rand",
           "inception_v3": "inception_rand"}
for _arch, _id in _TV_IDS.items():
    register_model(_id, description=f"torchvision {_arch}, random init, adapted to the input",
                   gradcam_layer="net." + ARCHS[_arch][1], layers=None, scales=("paper",),
                   min_size=1)(make_torchvision(_arch))
_pretrained.register()


_BUILD_LOCK = threading.RLock()


def build_model(name: str, num_classes: int, in_shape: tuple[int, int, int], seed: int,
                device: str | torch.device = "cpu") -> nn.Module:
    """A fresh model whose initial weights are a function of ``seed`` alone (global RNG untouched)."""
    if name not in MODELS:
        raise KeyError(f"model {name!r} is not registered; known: {sorted(MODELS)}")
    # the global RNG seeded, drawn from and restored under a lock: models built in concurrent
    # trainings (suite.training.run_concurrently) must not draw from each other's seed
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS[name].factory(num_classes, tuple(in_shape))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {name!r} returned {type(model).__name__}, not nn.Module")
    return model.to(device)


def layer_names(model: nn.Module, name: str) -> list[str]:
    """Declared layers of model ``name`` (input to output), or every module owning parameters."""
    declared = MODELS[name].layers
    if declared is not None:
        for layer in declared:
            model.get_submodule(layer)  # raises AttributeError naming the missing layer
        return list(declared)
    return [n for n, m in model.named_modules()
            if n and any(True for _ in m.parameters(recurse=False))]


def gradcam_module(model: nn.Module, name: str) -> nn.Module:
    layer = MODELS[name].gradcam_layer
    if layer is None:
        raise ValueError(f"model {name!r} declares no Grad-CAM layer (it has no feature map)")
    return model.get_submodule(layer)
