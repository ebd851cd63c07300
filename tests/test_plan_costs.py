"""The plan's unit costs: FLOP counts on meta tensors, pass counts, and no training of a heavy
architecture while planning (``suite.plan``)."""
from __future__ import annotations

import logging

import pytest

from suite.data.base import Context
from suite.plan import ATTR_PROXY, TIMED_MAX_STEP_FLOPS, _Planner, param_count, step_flops
from suite.specs import Case


def test_step_flops_of_the_mlp_are_the_matmul_count_by_hand():
    # fc 64->256->128->10: a forward is 2*in*out per layer and image; the backward computes the
    # weight gradient of every layer (2*in*out) and the input gradient of every layer but the
    # first (its input, the image, needs none)
    layers = [(64, 256), (256, 128), (128, 10)]
    fwd = sum(2 * i * o for i, o in layers)
    bwd = sum(2 * i * o for i, o in layers) + sum(2 * i * o for i, o in layers[1:])
    assert step_flops("mlp", 10, (1, 8, 8)) == (fwd, fwd + bwd)


def test_param_count_on_meta_equals_the_built_model():
    from suite.models import build_model

    built = build_model("resnet18_rand", 10, (1, 28, 28), 0)
    assert param_count("resnet18_rand", 10, (1, 28, 28)) == sum(p.numel() for p in built.parameters())


def test_the_torchvision_models_are_heavy_and_the_suites_are_timed():
    assert step_flops("vgg16_rand", 10, (3, 32, 32))[1] > TIMED_MAX_STEP_FLOPS
    assert step_flops("resnet8", 10, (3, 32, 32))[1] < TIMED_MAX_STEP_FLOPS


def test_a_heavy_model_is_costed_from_flops_without_training_it(tmp_path, caplog):
    ctx = Context(scale="paper", cache_dir=tmp_path / "cache", data_root=tmp_path / "nodata",
                  seeds=(0,))
    planner = _Planner(ctx)
    caplog.set_level(logging.INFO, logger="saliencybench")
    planner.case("roar[digits-vgg16_rand-gradient]", Case("roar", "digits", "vgg16_rand", "gradient",
                                                         "paper"))
    plan = planner.plan
    trained = [r.getMessage() for r in caplog.records if "plan: unit cost" in r.getMessage()]
    assert not any("vgg16" in m for m in trained)       # nothing of VGG16 was trained
    assert "GFLOP/img" in plan.unit_costs["train vgg16_rand on digits"]
    assert f"counted on {ATTR_PROXY}" in plan.unit_costs["gradient on vgg16_rand"]
    assert all(n.cost_s and n.cost_s > 0 for n in plan.to_build()
               if n.task.get("method") != "random")
    # the estimate is the FLOP count over the measured rate, times epochs and images
    fwd, step = step_flops("vgg16_rand", 10, (1, 28, 28))
    model = next(n for n in plan.nodes.values() if n.kind == "models")
    ds = planner.dataset("digits", "vgg16_rand")
    from suite.training import recipe

    epochs = recipe("digits", "vgg16_rand", "paper").train.epochs
    assert model.cost_s == pytest.approx(epochs * len(ds.x_train) * step / planner._flop_rate())


@pytest.mark.parametrize("method, expected", [("gradient", (1, 1)), ("intgrad", (50, 1))])
def test_passes_are_counted_per_image(tmp_path, method, expected):
    # one prediction pass without gradients, then the method's: IG at paper scale, 50 steps
    ctx = Context(scale="paper", cache_dir=tmp_path / "cache", data_root=tmp_path / "nodata")
    planner = _Planner(ctx)
    ds = planner.dataset("digits", "simplecnn")
    assert planner._passes(ds, "simplecnn", method, "test") == expected
