"""Procedural shapes: the class is carried by ONE object, and we know exactly where it is.

Each RGB image (32x32 by default) has a textured background (smooth colour noise plus faint
stripes), two to four distractors (thin line segments and small dots, drawn with the same colour
distribution as the objects) and one class object: disk, ring, square, triangle or cross, of
random size, position and colour (dark or bright). The ground-truth mask marks the object's pixels
(the `oracle` control ranks by it). Because colours, sizes and positions are drawn independently of
the class, no global statistic of the image (mean colour, brightness, contrast) tells the class;
``tests/test_data.py`` checks that a linear classifier on such statistics stays near chance.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from suite.data.base import Context, ImageDataset
from suite.registry import register_dataset

CLASSES = ("disk", "ring", "square", "triangle", "cross")
#: (train, test) image counts per scale
SIZES = {"smoke": (1500, 500), "small": (4000, 1000), "paper": (20000, 5000)}


def _object_masks(cls: np.ndarray, cy: np.ndarray, cx: np.ndarray, r: np.ndarray, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy = yy[None] - cy[:, None, None]
    dx = xx[None] - cx[:, None, None]
    r = r[:, None, None]
    d2 = dy ** 2 + dx ** 2
    shapes = [
        d2 <= r ** 2,                                                    # disk
        (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2),                        # ring
        (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r),               # square
        (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2.0),         # triangle (apex up)
        ((np.abs(dx) <= r / 3) & (np.abs(dy) <= r)) | ((np.abs(dy) <= r / 3) & (np.abs(dx) <= r)),
    ]
    out = np.zeros((len(cls), size, size), dtype=bool)
    for k, m in enumerate(shapes):
        sel = cls == k
        out[sel] = m[sel]
    return out


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random colours, dark or bright at random: (n, 3) in [0, 1]."""
    base = rng.uniform(0.0, 1.0, size=(n, 3))
    bright = rng.random(n) < 0.5
    return np.where(bright[:, None], 0.55 + 0.45 * base, 0.45 * base).astype(np.float32)


def generate(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images (n, 3, size, size) float32 in [0, 1], labels (n,), masks (n, 1, size, size)."""
    if n < 1 or size < 16:
        raise ValueError(f"shapes.generate needs n >= 1 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    # background: smooth colour noise + faint stripes + pixel noise
    low = torch.from_numpy(rng.uniform(0.25, 0.75, size=(n, 3, 4, 4)).astype(np.float32))
    bg = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).numpy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi, n)[:, None, None]
    freq = rng.uniform(0.15, 0.6, n)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    stripes = 0.08 * np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    img = bg + stripes[:, None] + rng.normal(0, 0.03, size=bg.shape).astype(np.float32)

    # distractors: 2-4 per image, line segments (thin) or dots (radius <= 1.6)
    n_dis = 4
    present = rng.random((n, n_dis)) < np.array([1.0, 1.0, 0.5, 0.5])
    is_line = rng.random((n, n_dis)) < 0.5
    p0 = rng.uniform(2, size - 2, size=(n, n_dis, 2)).astype(np.float32)
    ang = rng.uniform(0, np.pi, size=(n, n_dis))
    length = rng.uniform(5, 12, size=(n, n_dis))
    p1 = p0 + np.stack([np.sin(ang), np.cos(ang)], -1) * length[..., None]
    col = _colours(rng, n * n_dis).reshape(n, n_dis, 3)
    for k in range(n_dis):
        a, b = p0[:, k], p1[:, k]
        ab = b - a
        t = ((yy[None] - a[:, 0, None, None]) * ab[:, 0, None, None]
             + (xx[None] - a[:, 1, None, None]) * ab[:, 1, None, None]) / (ab ** 2).sum(-1)[:, None, None]
        t = np.clip(t, 0, 1)
        py = a[:, 0, None, None] + t * ab[:, 0, None, None]
        px = a[:, 1, None, None] + t * ab[:, 1, None, None]
        seg = (yy[None] - py) ** 2 + (xx[None] - px) ** 2 <= 0.6
        dot = (yy[None] - a[:, 0, None, None]) ** 2 + (xx[None] - a[:, 1, None, None]) ** 2 <= 2.5
        m = np.where(is_line[:, k, None, None], seg, dot) & present[:, k, None, None]
        img = np.where(m[:, None], col[:, k, :, None, None], img)

    # the class object, on top
    labels = rng.integers(0, len(CLASSES), n)
    r = rng.uniform(size * 0.14, size * 0.24, n).astype(np.float32)
    margin = r + 1
    cy = rng.uniform(margin, size - 1 - margin).astype(np.float32)
    cx = rng.uniform(margin, size - 1 - margin).astype(np.float32)
    masks = _object_masks(labels, cy, cx, r, size)
    ocol = _colours(rng, n)
    texture = rng.normal(0, 0.04, size=img.shape).astype(np.float32)
    img = np.where(masks[:, None], ocol[:, :, None, None] + texture, img)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return img, labels.astype(np.int64), masks[:, None]


@register_dataset("shapes", description="procedural RGB shapes with distractors, 3x32x32, "
                  "5 classes, ground-truth object masks", embedded=True, has_masks=True)
def load_shapes(scale: str, ctx: Context | None = None) -> ImageDataset:
    n_train, n_test = SIZES[scale]
    x, y, m = generate(n_train + n_test, 32, seed=0)
    xt, yt, mt = (torch.from_numpy(a) for a in (x, y, m))
    return ImageDataset("shapes", xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:], CLASSES,
                        mt[:n_train], mt[n_train:])
