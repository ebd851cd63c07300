"""A tiny dataset, model and two faulty methods for the executor tests (tests/test_executor.py):
every build takes a fraction of a second, so plan, local run and Ray runs stay cheap."""
import os
from pathlib import Path

import torch
from torch import nn

import suite
from suite.specs import TrainSpec

pytest_plugins = ["suite.plugin"]


@suite.register_dataset("tinyset", description="96 + 48 8x8 gray images, 3 classes (a bright row band)")
def _tinyset(scale, ctx):
    g = torch.Generator().manual_seed(0)
    n = 144
    y = torch.arange(n) % 3
    x = torch.rand((n, 1, 8, 8), generator=g) * 0.3
    for i in range(n):
        r = int(y[i]) * 3
        x[i, 0, r:r + 2] += 0.6
    return suite.ImageDataset("tinyset", x[:96].contiguous(), y[:96].contiguous(),
                              x[96:].contiguous(), y[96:].contiguous(), ("top", "mid", "low"))


@suite.register_model("tinynet", gradcam_layer="0")
def _tinynet(num_classes, in_shape):
    return nn.Sequential(nn.Conv2d(in_shape[0], 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, num_classes))


suite.register_recipe("tinyset", "tinynet", min_test_acc=0.0,
                      train=TrainSpec(epochs=2, batch_size=32, lr=0.05, weight_decay=0.0))


@suite.register_method("crashy", needs_gradient=False,
                       description="the image as its own map; its first call kills its process")
def _crashy(model, x, target):
    # beside this file: a Ray worker has the cluster's environment, not the driver's
    marker = Path(__file__).resolve().parent / "markers" / "crashy-died"
    if not marker.exists():           # a lost worker: Ray must retry the task
        marker.touch()
        os._exit(1)
    return x.clone()


@suite.register_method("broken", description="always raises")
def _broken(model, x, target):
    raise RuntimeError("broken on purpose (tests/test_executor.py)")
