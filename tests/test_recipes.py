"""Every paper-scale training recipe, exercised on a small sample in the real input shape.

Paper-scale recipes have never run on these machines (no CIFAR-10, Imagenette or GPU here), so each
(dataset, model) recipe at ``--scale paper`` is run through the real training loop
(``suite.training.train``) on 8 to 128 seeded random images of the dataset's shape, with
learnable labels (each class a fixed random pattern, each image half pattern, half noise), with the
recipe's optimizer, learning rate, schedule (its warm-up fraction of the few steps: the peak
learning rate is reached within two or three steps, sooner than in a real run), momentum, weight
decay and augmentation, and a smaller batch (noisier: stricter). It must not diverge: every epoch's
loss finite and the last below 1.5 x max(first, ln classes), the trained model's outputs still
dependent on its input (a network whose ReLUs died outputs one constant vector), and for the
suite's own models the last epoch's loss below the first's (it learns).

Recipes that share a model and a TrainSpec (up to the number of epochs) are one case, run at the
shape of the first of their datasets in ``PREFERENCE`` (CIFAR-10's 3x32x32 for the flip-and-crop
recipes, which Fashion-MNIST, shapes and Imagenette share; MNIST's 1x28x28 for the crop recipe;
digits' 1x16x16 for the plain one, which the image folder shares); its id names the datasets. The
MLP runs at every real shape, Imagenette's 3x128x128 included (its first layer's fan-in is the
input size). The torchvision architectures (``*_rand``, paper scale only) cost seconds per step on
a CPU (AlexNet's and VGG16's classifiers hold 57 and 120 million parameters): one case per
(optimizer, lr) each, 2 steps of 8 images (ResNet-18: 12 of 32), which shows that the recipe runs
through the loop and stays finite, not that it learns. ``SALIENCYBENCH_FULL_RECIPES=1`` runs every
(model, shape, spec) at the real shapes, Imagenette's 3x128x128 and the folder's 3x64x64 included,
with more steps (meant for a GPU machine: ``SALIENCYBENCH_RECIPES_DEVICE=cuda``).

What a few steps cannot show: AlexNet dying at SGD lr 0.1 takes tens of steps to appear (measured,
one CPU thread, batch 16, 64 random-label 3x32x32 images: the spread of its logits over the batch
grew from 0.003 to 0.015 by step 16 and fell back to 0.0013 by step 40, eval-mode spread 1e-5). The
lr 0.01 of AlexNet and VGG16 comes from their papers (see ``suite/training.py``), not from this
test.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import pytest
import torch

from suite.models import build_model
from suite.registry import DATASETS, MODELS
from suite.matrix import is_builtin, load_builtins
from suite.specs import TrainSpec
from suite.training import recipe, torch_threads, train

FULL = os.environ.get("SALIENCYBENCH_FULL_RECIPES") == "1"
DEVICE = os.environ.get("SALIENCYBENCH_RECIPES_DEVICE", "cpu")


def _paper_shapes() -> dict[str, tuple[tuple[int, int, int], int]]:
    """dataset -> (input shape at paper scale, classes), from the loaders' own constants."""
    from suite.data.base import Context
    from suite.data.digits import SIZE as DIGITS
    from suite.data.torchvision_sets import IMAGENETTE_SIDE

    side = IMAGENETTE_SIDE["paper"]
    folder = Context().image_size
    return {"digits": ((1, DIGITS, DIGITS), 10), "shapes": ((3, 32, 32), 5),
            "mnist": ((1, 28, 28), 10), "fashion": ((1, 28, 28), 10),
            "cifar10": ((3, 32, 32), 10), "imagenette": ((3, side, side), 10),
            "folder": ((3, folder, folder), 10)}


def _heavy(model: str) -> bool:
    return model.endswith("_rand")


#: the dataset whose shape stands for the others that share a (model, spec), first found wins
PREFERENCE = ("cifar10", "mnist", "digits", "shapes", "fashion", "folder", "imagenette")


def _groups() -> list[tuple[str, tuple[int, int, int], int, TrainSpec, tuple[str, ...]]]:
    """(model, shape, classes, spec, datasets) per distinct paper-scale recipe."""
    load_builtins()
    table = _paper_shapes()
    groups: dict[tuple, list[str]] = {}
    for ds in DATASETS.values():
        if not is_builtin("dataset", ds.name) or "paper" not in ds.scales or ds.eval_only:
            continue
        shape, _ = table[ds.name]   # KeyError: a new paper-scale dataset needs its shape here
        for mo in MODELS.values():
            if not is_builtin("model", mo.name) or "paper" not in mo.scales or mo.datasets:
                continue               # pretrained ids: loaded, never trained
            rec = recipe(ds.name, mo.name, "paper")
            if rec.unsupported:
                continue
            spec = replace(rec.train, epochs=1)
            if _heavy(mo.name) and not FULL:     # one case per (optimizer, lr)
                key = (mo.name, None, replace(spec, augment="none"))
            elif mo.name == "mlp" or FULL:         # the MLP's first layer grows with the input
                key = (mo.name, shape, spec)
            else:
                key = (mo.name, None, spec)
            groups.setdefault(key, []).append(ds.name)
    out = []
    for (model, shape, spec), names in groups.items():
        first = min(names, key=PREFERENCE.index)
        if shape is None:
            shape = table[first][0]
            spec = replace(spec, augment=recipe(first, model, "paper").train.augment)
        out.append((model, shape, max(table[n][1] for n in names), spec,
                    tuple(sorted(names, key=PREFERENCE.index))))
    return out


def _sample(shape, ncls: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(ncls, *shape, generator=g)
    y = torch.arange(n) % ncls
    x = 0.5 * patterns[y] + 0.5 * torch.rand(n, *shape, generator=g)
    return x, y


def _exercise(model_name: str, shape, ncls: int, spec: TrainSpec, *, n: int, batch: int,
              epochs: int, seed: int = 0):
    """(per-epoch losses, spread of the eval-mode logits over images) after training at the
    recipe (its schedule over the few steps)."""
    x, y = _sample(shape, ncls, n, seed)
    run = replace(spec, epochs=epochs, batch_size=batch)
    model = build_model(model_name, ncls, shape, seed)
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(seed)   # dropout
        try:
            res = train(run, model, x, y, device=DEVICE, seed=seed, label=f"{model_name} recipe")
        except FloatingPointError:     # the loop's own divergence check (a NaN last epoch)
            return [math.nan], 0.0
    with torch.no_grad(), torch_threads(1):
        out = res.model.eval()(x[:batch].to(DEVICE)).cpu()
    return [h["loss"] for h in res.history], float(out.std(0).mean())


def _verdict(losses: list[float], spread: float, ncls: int, *, learns: bool) -> str | None:
    """None when the run did not diverge, else what went wrong."""
    if not all(math.isfinite(v) for v in losses):
        return f"loss not finite: {losses}"
    if learns and not losses[-1] < losses[0]:
        return f"loss did not fall: {losses}"
    if not losses[-1] < 1.5 * max(losses[0], math.log(ncls)):
        return f"loss grew: {losses}"
    if not spread > 1e-6:
        return f"the outputs no longer depend on the input (logit spread {spread:.2g})"
    return None


_CASES = _groups()


@pytest.mark.parametrize("model,shape,ncls,spec,datasets", _CASES,
                         ids=[f"{m}-{'x'.join(map(str, s))}-{'_'.join(d)}" for m, s, _, _, d in _CASES])
def test_paper_recipe_does_not_diverge(model, shape, ncls, spec, datasets):
    if model == "resnet18_rand" and not FULL:   # cheap enough for 12 steps of 32
        losses, spread = _exercise(model, shape, ncls, spec, n=128, batch=32, epochs=3)
        learns = False
    elif _heavy(model) and not FULL:
        losses, spread = _exercise(model, shape, ncls, spec, n=8, batch=8, epochs=2)
        learns = False
    else:
        big = math.prod(shape) > 3 * 64 * 64
        n, batch, epochs = ((48, 16, 3) if big else (128, 32, 3)) if not FULL else (512, 64, 6)
        losses, spread = _exercise(model, shape, ncls, spec, n=n, batch=batch, epochs=epochs)
        learns = True
    bad = _verdict(losses, spread, ncls, learns=learns)
    assert bad is None, f"paper recipe {spec} of {model} on {'/'.join(datasets)} {shape}: {bad}"


def test_the_check_catches_a_diverging_recipe():
    """The same check on a recipe known to diverge (SGD at lr 50 on the small CNN) and on one known
    to work (lr 0.1)."""
    spec = TrainSpec(epochs=1, lr=50.0, weight_decay=0.0)
    losses, spread = _exercise("simplecnn", (3, 32, 32), 10, spec, n=128, batch=32, epochs=3)
    assert _verdict(losses, spread, 10, learns=True) is not None
    good = replace(spec, lr=0.1)
    losses, spread = _exercise("simplecnn", (3, 32, 32), 10, good, n=128, batch=32, epochs=3)
    assert _verdict(losses, spread, 10, learns=True) is None


def test_the_check_catches_resnet18_at_lr_0p1():
    """torchvision's ResNet-18 at the BatchNorm CNNs' lr 0.1 overshoots where its recipe does not."""
    spec = replace(recipe("cifar10", "resnet18_rand", "paper").train, epochs=1)
    assert spec.lr == 0.05
    losses, spread = _exercise("resnet18_rand", (3, 32, 32), 10, replace(spec, lr=0.1), n=128,
                               batch=32, epochs=3)
    assert _verdict(losses, spread, 10, learns=False).startswith("loss grew")


def test_every_paper_dataset_and_trained_model_has_a_case():
    covered = {(m, d) for m, _, _, _, ds in _CASES for d in ds}
    load_builtins()
    for d in ("digits", "shapes", "mnist", "fashion", "cifar10", "imagenette", "folder"):
        for m in ("simplecnn", "resnet8", "warn", "alexnet_rand", "vgg16_rand", "inception_rand"):
            assert (m, d) in covered
    assert ("cifar10", "mlp") in {(d, m) for m, d in covered}
    assert ("shapes", "mlp") not in {(d, m) for m, d in covered}   # unsupported: no recipe
