"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 scans, 10 classes, no download.

The 8x8 images (values 0..16) are scaled to [0, 1] and upsampled bilinearly to 16x16, so that a
3-conv CNN with two 2x2 poolings still has a 4x4 feature map for Grad-CAM and regions of 2x2 or 4x4
pixels make sense for the perturbation metrics. The split is a deterministic stratified 80/20.
The set is the same at every scale (it is small enough).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from suite.data.base import Context, ImageDataset, stratified_split
from suite.registry import register_dataset

SIZE = 16


@register_dataset("digits", description="scikit-learn handwritten digits, 1x16x16, 10 classes",
                  embedded=True)
def load_digits(scale: str, ctx: Context | None = None) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_load

    bunch = sk_load()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = images.clamp_(0.0, 1.0).contiguous()
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, 0.2, seed=0)
    y = torch.from_numpy(labels)
    return ImageDataset("digits", images[train], y[train], images[test], y[test],
                        tuple(str(i) for i in range(10)))
