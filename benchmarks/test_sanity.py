"""Cascading randomization: the suite's test vs the attribution passes it needs vs Quantus's MPRT.

simplecnn (seeded init: the weights do not change the cost) on the first 128 shapes test images
(32 in quick mode), gradient maps, every layer that owns parameters randomized top-down.

* suite: ``cascading_randomization`` (copies, re-initialisation, passes, four batched similarity
  measures per step); floor "passes": the trained model's prediction (the targets) and
  ``extract`` on the trained model and on each cascading step's model (models built beforehand,
  so only the passes are timed), the least any implementation does. Target: suite/passes <= 1.2.
  The suite's Spearman (|maps|) per step is checked against scipy's on the floor's maps.
* peer "quantus" (optional: ``pip install -e '.[bench]'``): ``quantus.MPRT`` (or
  ``ModelParameterRandomisation``) with Spearman only, the same explain function and layers.
  Target: quantus/suite >= 2.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from kernels.similarity import spearman_ref
from suite.methods import default_aggregation, explain, extract, method_params, predict
from suite.metrics import sanity as S
from suite.metrics.randomization import cascading_models

QUANTUS = "Quantus is an optional peer, not installed (pip install -e '.[bench]')"
METHOD = "gradient"


@pytest.fixture(scope="module")
def setup(quick):
    from suite.data import load
    from suite.data.base import Context
    from suite.models import build_model

    ds = load("shapes", Context(scale="smoke"))
    x, y, _ = ds.split("test")
    n = 32 if quick else 128
    x, y = x[:n].contiguous(), y[:n]
    model = build_model("simplecnn", ds.num_classes, tuple(x.shape[1:]), 0).eval()
    layers = [n for n, m in model.named_modules()
              if n and any(True for _ in m.parameters(recurse=False))]
    return model, x, y, layers, method_params(METHOD, "smoke")


@pytest.mark.benchmark(group="sanity-cascade")
def test_cascade_suite(speed, setup):
    model, x, y, layers, params = setup
    res = speed(lambda: S.cascading_randomization(model, "simplecnn", METHOD, x, y, layers=layers,
                                                  params=params, batch_size=128),
                side="suite", role="suite", items=len(x), rounds=3)
    maps = _passes(model, x, layers, params)[1]
    how = default_aggregation(METHOD)
    norm = [S.normalize_maps(m, how) for m in maps]
    want = [np.nan_to_num(spearman_ref(norm[0], m, absolute=True)).mean() for m in norm]
    assert res.steps[0] == "trained" and sorted(res.steps[1:]) == sorted(layers)
    np.testing.assert_allclose(res.similarity["spearman_abs"], want, rtol=0, atol=1e-9)


def _passes(model, x, layers, params, models=None):
    models = models or [model] + [copy.deepcopy(m) for _, m in cascading_models(model, layers)]
    target = predict(model, x)    # the trained model's classes: the targets of every step
    return target, [extract(m, "simplecnn", METHOD, x, labels=target, target="label",
                            params=params, batch_size=128) for m in models]


@pytest.mark.benchmark(group="sanity-cascade")
def test_cascade_passes_floor(speed, setup):
    model, x, _, layers, params = setup
    models = [model] + [copy.deepcopy(m) for _, m in cascading_models(model, layers)]
    target, maps = speed(lambda: _passes(model, x, layers, params, models), side="passes",
                         role="floor", items=len(x), rounds=3)
    assert len(maps) == len(layers) + 1
    torch.testing.assert_close(torch.from_numpy(maps[0]), explain(METHOD, model, x, target))


@pytest.mark.benchmark(group="sanity-cascade")
def test_cascade_quantus(speed, setup):
    quantus = pytest.importorskip("quantus", reason=QUANTUS)
    model, x, _, _, params = setup
    cls = getattr(quantus, "MPRT", None) or quantus.ModelParameterRandomisation

    def explain_func(model, inputs, targets, **kw):
        xt = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        tt = torch.as_tensor(np.asarray(targets)).long()
        return explain(METHOD, model, xt, tt, model_name="simplecnn", **params).numpy()

    x_np, y_np = x.numpy(), predict(model, x).numpy()

    def run():
        metric = cls(similarity_func=quantus.similarity_func.correlation_spearman,
                     layer_order="top_down", disable_warnings=True, display_progressbar=False)
        return metric(model=copy.deepcopy(model), x_batch=x_np, y_batch=y_np, a_batch=None,
                      explain_func=explain_func, explain_func_kwargs={}, device="cpu",
                      batch_size=128, channel_first=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = speed(run, side="quantus", role="peer", items=len(x), rounds=3)
    assert scores is not None
