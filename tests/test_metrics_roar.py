"""ROAR / KAR (suite.metrics.roar): exact counts, identity, oracle-first removal, and a re-run that
retrains nothing (the cache's build counter)."""
import numpy as np
import pytest
import torch

from suite.data.base import Context, ImageDataset
from suite.metrics import roar
from suite.specs import TrainSpec


def _images(n=5, c=3, h=6, w=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, c, h, w)).astype(np.float32), rng.normal(size=(n, 1, h, w))


@pytest.mark.parametrize("granularity", ["pixel", "element"])
@pytest.mark.parametrize("t", [0.0, 0.1, 0.29, 0.5, 0.9, 1.0])
def test_removes_exactly_floor_t_p_inputs(granularity, t):
    x, a = _images()
    n, c, h, w = x.shape
    v = roar.ranking_values(np.repeat(a, c, 1) if granularity == "element" else a, "gradient",
                            granularity, aggregation="sum", channels=c)
    out = roar.masked(x, v, t, 2.0, mode="remove", granularity=granularity)
    replaced = (out == 2.0)
    p = h * w if granularity == "pixel" else c * h * w
    k = int(np.floor(t * p + 1e-9))
    per_image = replaced.reshape(n, -1).sum(1)
    assert (per_image == (k * c if granularity == "pixel" else k)).all()
    if granularity == "pixel":   # a pixel is replaced in all channels or in none
        assert (replaced.all(1) == replaced.any(1)).all()
    keep = roar.masked(x, v, t, 2.0, mode="keep", granularity=granularity)
    assert ((keep == 2.0).reshape(n, -1).sum(1) == c * h * w - per_image).all()


def test_t0_remove_and_t1_keep_are_the_identity():
    x, a = _images()
    v = roar.ranking_values(a, "gradient")
    assert np.array_equal(roar.masked(x, v, 0.0, 0.5, mode="remove"), x)
    assert np.array_equal(roar.masked(x, v, 1.0, 0.5, mode="keep"), x)


def test_ground_truth_mask_removes_the_object_first():
    n, h, w = 4, 10, 10
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, (n, 3, h, w)).astype(np.float32)
    masks = np.zeros((n, 1, h, w), dtype=np.float32)
    for i in range(n):
        r, c = rng.integers(0, 6, 2)
        masks[i, 0, r:r + 4, c:c + 4] = 1.0                 # a 4x4 object: 16 of 100 pixels
    v = roar.ranking_values(masks, "oracle")
    out = roar.masked(x, v, 0.16, 9.0)
    assert np.array_equal(out[:, 0] == 9.0, masks[:, 0] == 1.0)   # exactly the object, nothing else
    # element granularity repeats the one-channel mask over the channels: same selection
    ve = roar.ranking_values(masks, "oracle", "element", channels=3)
    oute = roar.masked(x, ve, 0.16, 9.0, granularity="element")
    assert np.array_equal((oute == 9.0).sum(1) > 0, masks[:, 0] == 1.0)


def test_random_curve_check():
    def res(acc, mode="remove"):
        return roar.RoarResult("random", mode, "pixel", "sum", (0.1, 0.5, 0.9), (0,), (tuple(acc),),
                               0.9, 0, roar.Timings())
    def ok(r):
        return all(c.passed for c in roar.random_curve_checks(r))

    assert ok(res([0.8, 0.7, 0.72]))              # a rise within the tolerance
    failed = [c for c in roar.random_curve_checks(res([0.5, 0.7, 0.4])) if not c.passed]
    assert len(failed) == 1 and "not monotone" in failed[0].message
    assert "t=0.1 then 0.700 at t=0.5" in failed[0].message
    assert ok(res([0.3, 0.6, 0.8], "keep"))
    assert not ok(res([0.3, 0.6, 1.2], "keep"))   # outside [0, 1]
    r = res([0.8, 0.6, 0.4])
    assert r.score == pytest.approx(0.6) and r.curve()["x"] == [0.0, 0.1, 0.5, 0.9]


def _tiny_dataset():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 16, 16, generator=g) * 0.5
    y = torch.arange(96) % 2
    x[y == 1, :, 2:8, 2:8] += 0.5                        # class 1: a bright patch top-left
    return ImageDataset("tinyroar", x[:64], y[:64], x[64:], y[64:], ("a", "b"))


def test_rerun_retrains_nothing_and_a_new_method_retrains_only_itself(tmp_path):
    from suite.artifacts import trained_model
    from suite.matrix import load_builtins

    load_builtins()
    ctx = Context(scale="smoke", cache_dir=tmp_path / "cache", seeds=(0,))
    ds = _tiny_dataset()
    trained = trained_model(ctx, ds, "simplecnn", 0)
    spec = TrainSpec(epochs=1, batch_size=32)
    kw = dict(fractions=(0.3, 0.7), train_spec=spec)
    first = roar.evaluate(ctx, ds, trained, "random", **kw)
    assert first.retrained == 2
    n_builds = len(ctx.cache.builds())
    again = roar.evaluate(ctx, ds, trained, "random", **kw)
    assert again.retrained == 0 and len(ctx.cache.builds()) == n_builds
    assert again.accuracy == first.accuracy
    kar = roar.evaluate(ctx, ds, trained, "random", mode="keep", **kw)    # another mode: new models
    assert kar.retrained == 2
    n_builds = len(ctx.cache.builds())
    sob = roar.evaluate(ctx, ds, trained, "sobel", **kw)
    new = ctx.cache.builds()[n_builds:]
    assert sob.retrained == 2
    assert sorted(b["kind"] for b in new) == ["attributions", "attributions", "roar", "roar"]
    assert all("sobel" in b["name"] for b in new)
    assert len(first.accuracy) == 1 and len(first.accuracy[0]) == 2
