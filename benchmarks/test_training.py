"""Training: ``suite.training.train`` vs the bare forward + backward + step loop on the same batches.

simplecnn on the digits training set (1,437 images of 1x16x16; 256 in quick mode), the smoke
recipe (SGD with Nesterov momentum, one-cycle schedule, batch 128, no augmentation) for 2 epochs.

* suite: ``train`` (device transfer, seeded permutation, batch indexing, augmentation step, loss
  and accuracy bookkeeping, epoch log, the final train-accuracy pass);
* floor "bare_loop": the batches taken beforehand (the same seeded permutations), then per batch
  only forward, cross-entropy, zero_grad, backward, optimizer and scheduler step.

suite/bare_loop is the loop's overhead per epoch (items = epochs). Both train bit-identically on
CPU: the final weights are checked equal.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from suite.models import build_model
from suite.training import recipe, train

EPOCHS, SEED = 2, 0


@pytest.fixture(scope="module")
def setup(quick):
    from suite.data import Context, load

    ds = load("digits", Context(scale="smoke"))
    x, y = ds.x_train, ds.y_train
    if quick:
        x, y = x[:256], y[:256]
    spec = replace(recipe("digits", "simplecnn", "smoke").train, epochs=EPOCHS)
    assert spec.augment == "none" and spec.optimizer == "sgd"   # what bare_loop reproduces
    init = build_model("simplecnn", ds.num_classes, ds.in_shape, SEED)
    return spec, init, x.contiguous(), y


def batches(spec, x, y, seed):
    """The batches ``train`` draws: one seeded permutation per epoch, consecutive slices."""
    gen = torch.Generator().manual_seed(seed)
    n, out = len(x), []
    for _ in range(spec.epochs):
        perm = torch.randperm(n, generator=gen)
        out += [(x[idx], y[idx]) for idx in perm.split(spec.batch_size)]
    return out


def bare_loop(spec, model, data):
    model.train()
    total = len(data)
    warm = max(1, int(spec.warmup_frac * total))
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, nesterov=True,
                          weight_decay=spec.weight_decay)

    def lr_at(step):   # the one-cycle schedule of suite.training.train
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    for xb, yb in data:
        loss = F.cross_entropy(model(xb), yb, label_smoothing=spec.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


def _same_weights(a, b):
    for (k, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(u, v, rtol=0, atol=0, msg=k)


@pytest.mark.benchmark(group="training")
def test_train_suite(speed, setup):
    spec, init, x, y = setup
    res = speed(lambda: train(spec, copy.deepcopy(init), x, y, seed=SEED), side="suite",
                role="suite", items=EPOCHS)
    assert len(res.history) == EPOCHS and math.isfinite(res.history[-1]["loss"])
    _same_weights(res.model, bare_loop(spec, copy.deepcopy(init), batches(spec, x, y, SEED)))


@pytest.mark.benchmark(group="training")
def test_train_bare_loop_floor(speed, setup):
    spec, init, x, y = setup
    data = batches(spec, x, y, SEED)
    model = speed(lambda: bare_loop(spec, copy.deepcopy(init), data), side="bare_loop",
                  role="floor", items=EPOCHS)
    _same_weights(model, train(spec, copy.deepcopy(init), x, y, seed=SEED).model)
