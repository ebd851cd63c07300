"""ROAR end to end vs the work it must do (attribution, masking, retraining), on a fresh cache.

digits / simplecnn (seeded init as the base model: the weights do not change the cost), gradient
maps, smoke scale (fractions 0.1, 0.5, 0.9; the smoke retraining recipe), 1 seed. Quick mode: one
fraction (0.5), one epoch, 256 training and 64 test images.

* suite: ``suite.metrics.roar.evaluate`` on an empty artifact cache each round (so nothing is
  loaded: every map is extracted and every model retrained, through the cache's writes and
  locks); its split into attribution, masking and retraining seconds goes into ``extra_info``.
* floor "work": the same steps called directly: ``extract`` of the training and test maps,
  the ranking values, the rank-and-mask passes and, per fraction, ``suite.training.train`` of a
  fresh model and its test accuracy. suite/work is ROAR's bookkeeping overhead (caching, keys,
  locks). Both sides retrain bit-identically on CPU: the accuracies are checked equal.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from suite.artifacts import TrainedModel
from suite.data.base import Context
from suite.methods import default_aggregation, extract, method_params
from suite.metrics import roar
from suite.models import build_model
from suite.training import evaluate, train

METHOD, MODEL = "gradient", "simplecnn"


@pytest.fixture(scope="module")
def setup(quick, tmp_path_factory):
    from suite.data import load

    ds = load("digits", Context(scale="smoke"))
    if quick:   # a fingerprint of the subset is computed anew ("")
        ds = replace(ds, x_train=ds.x_train[:256], y_train=ds.y_train[:256], x_test=ds.x_test[:64],
                     y_test=ds.y_test[:64], fingerprint="")
    model = build_model(MODEL, ds.num_classes, ds.in_shape, 0).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    trained = TrainedModel(model, MODEL, ds.name, 0, "true", "bench-seeded-init-0", float("nan"),
                           float("nan"), 0.0, False, 0.0)
    spec = roar.retrain_spec(ds.name, MODEL, "smoke")
    fractions = roar.FRACTIONS["smoke"]
    if quick:
        spec, fractions = replace(spec, epochs=1), (0.5,)
    return ds, trained, spec, fractions, tmp_path_factory.mktemp("roar-bench")


@pytest.mark.benchmark(group="roar")
def test_roar_suite(speed, setup):
    ds, trained, spec, fractions, root = setup
    fresh = itertools.count()

    def run():
        ctx = Context(scale="smoke", seeds=(0,), cache_dir=root / f"cache-{next(fresh)}")
        return roar.evaluate(ctx, ds, trained, METHOD, mode="remove", fractions=fractions,
                             train_spec=spec)

    res = speed(run, side="suite", role="suite", rounds=3)
    speed.info(attribution_s=res.timings.attribution_s, masking_s=res.timings.masking_s,
               retraining_s=res.timings.training_s)
    assert res.retrained == len(fractions)
    np.testing.assert_array_equal(res.curve_mean(), work(ds, trained, spec, fractions))


def work(ds, trained, spec, fractions):
    """The floor: the test accuracy of the model retrained on each fraction's masked images."""
    params = method_params(METHOD, "smoke")
    values = {}
    for split in ("train", "test"):
        x, y, _ = ds.split(split)
        a = extract(trained.model, MODEL, METHOD, x, labels=y, target="predicted", params=params)
        values[split] = roar.ranking_values(a, METHOD, "pixel", aggregation=default_aggregation(METHOD),
                                            channels=ds.in_shape[0])
    fill = ds.channel_mean.numpy().astype(np.float64)
    acc = []
    for t in fractions:
        x_tr = torch.from_numpy(roar.masked(ds.x_train, values["train"], t, fill))
        x_te = torch.from_numpy(roar.masked(ds.x_test, values["test"], t, fill))
        m = build_model(MODEL, ds.num_classes, ds.in_shape, 0)
        train(spec, m, x_tr, ds.y_train, seed=0)
        acc.append(evaluate(m, x_te, ds.y_test))
    return np.array(acc)


@pytest.mark.benchmark(group="roar")
def test_roar_work_floor(speed, setup):
    ds, trained, spec, fractions, _ = setup
    acc = speed(lambda: work(ds, trained, spec, fractions), side="work", role="floor", rounds=3)
    assert acc.shape == (len(fractions),) and ((0 <= acc) & (acc <= 1)).all()
