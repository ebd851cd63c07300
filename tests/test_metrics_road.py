"""ROAD (suite.metrics.road): exact removal counts, a model that ignores its input has a flat curve,
noisy linear and fixed-value imputation differ, and the retraining option caches."""
import numpy as np
import pytest
import torch
from torch import nn

from suite.metrics import road


class _Constant(nn.Module):
    """Ignores its input: always the same logits."""

    def __init__(self, k=3):
        super().__init__()
        self.logits = nn.Parameter(torch.arange(k, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


class _MeanBright(nn.Module):
    """Class 1 when the image's mean intensity exceeds 0.5."""

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1) * 50


def _data(n=40, c=3, h=12, w=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, c, h, w)).astype(np.float32)
    v = rng.normal(size=(n, h, w))
    return x, v


@pytest.mark.parametrize("t", [0.0, 0.1, 0.37, 0.9, 1.0])
def test_removal_masks_count_floor_t_p_pixels_from_either_end(t):
    _, v = _data()
    n, h, w = v.shape
    orders = road.removal_orders(v)
    k = int(np.floor(t * h * w + 1e-9))
    morf, lerf = (road.removed_at(orders[o], t, (h, w)) for o in road.ORDERS)
    assert (morf.reshape(n, -1).sum(1) == k).all() and (lerf.reshape(n, -1).sum(1) == k).all()
    flat = v.reshape(n, -1)
    if 0 < k < h * w:   # MoRF takes the largest values, LeRF the smallest
        assert (flat[morf.reshape(n, -1)].reshape(n, k).min(1)
                >= np.sort(flat, 1)[:, -k]).all()
        assert (flat[lerf.reshape(n, -1)].reshape(n, k).max(1) <= np.sort(flat, 1)[:, k - 1]).all()


@pytest.mark.parametrize("imputation", road.IMPUTATIONS)
@pytest.mark.parametrize("order", road.ORDERS)
def test_a_model_that_ignores_the_input_has_a_flat_curve(order, imputation):
    x, v = _data()
    y = torch.randint(0, 3, (len(x),), generator=torch.Generator().manual_seed(0))
    res = road.road_curve(_Constant(), x, y, v, order=order, imputation=imputation,
                          fractions=(0.1, 0.5, 0.9), fill=0.5)
    acc = np.asarray(res.accuracy)
    assert np.all(acc == res.base_accuracy)
    assert np.allclose(res.probability, res.probability[0][0])


def test_fixed_value_and_noisy_linear_imputation_differ():
    x, v = _data()
    removed = road.removed_at(road.removal_orders(v)["morf"], 0.5, x.shape[2:])
    lin = road.fill_removed(x, removed, imputation="linear", noise_std=0.01, seed=0)
    fix = road.fill_removed(x, removed, imputation="fixed", noise_std=0.01, seed=0, fill=0.5)
    keep = ~removed[:, None].repeat(3, 1)
    assert np.array_equal(lin[keep], x[keep]) and np.array_equal(fix[keep], x[keep])
    assert np.all(fix[~keep] == 0.5)
    assert np.abs(lin[~keep] - 0.5).mean() > 0.01       # imputed values vary, the fixed ones don't
    # a constant image stays constant under linear imputation without noise; fixed fill does not
    const = np.full((2, 1, 8, 8), 0.3, dtype=np.float32)
    rm = np.zeros((2, 8, 8), dtype=bool)
    rm[:, 2:5, 3:6] = True
    assert np.allclose(road.fill_removed(const, rm, imputation="linear", noise_std=0.0, seed=0), 0.3)
    assert not np.allclose(road.fill_removed(const, rm, imputation="fixed", noise_std=0.0, seed=0,
                                             fill=0.9), 0.3)
    # and the curves differ: mean-brightness classes, removing the brightest pixels first
    xb = np.concatenate([x * 0.6, x * 0.6 + 0.4]).astype(np.float32)
    yb = torch.cat([torch.zeros(len(x)), torch.ones(len(x))]).long()
    vb = xb.mean(1)
    kw = dict(order="morf", fractions=(0.3, 0.6), seeds=(0,))
    a = road.road_curve(_MeanBright(), xb, yb, vb, imputation="linear", **kw)
    b = road.road_curve(_MeanBright(), xb, yb, vb, imputation="fixed", fill=1.0, **kw)
    assert a.accuracy != b.accuracy


def test_result_curve_and_validation():
    x, v = _data(n=6)
    y = torch.zeros(6, dtype=torch.long)
    res = road.road_curve(_Constant(), x, y, v, fractions=(0.2, 0.4), seeds=(0, 1))
    c = res.curve()
    assert c["x"] == [0.0, 0.2, 0.4] and len(c["y"]) == 3 and c["y_std"] == [0.0, 0.0, 0.0]
    assert len(res.seed_scores()) == 2 and not res.higher_is_better
    with pytest.raises(ValueError, match="order"):
        road.road_curve(_Constant(), x, y, v, order="up")
    with pytest.raises(ValueError, match="values"):
        road.road_curve(_Constant(), x, y, v[:3])


def test_retraining_option_is_cached(tmp_path):
    from suite.artifacts import trained_model
    from suite.data.base import Context, ImageDataset
    from suite.matrix import load_builtins
    from suite.specs import TrainSpec

    load_builtins()
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(80, 1, 16, 16, generator=g) * 0.5
    ys = torch.arange(80) % 2
    xs[ys == 1, :, 2:8, 2:8] += 0.5
    ds = ImageDataset("tinyroad", xs[:56], ys[:56], xs[56:], ys[56:], ("a", "b"))
    ctx = Context(scale="smoke", cache_dir=tmp_path / "cache", seeds=(0,))
    trained = trained_model(ctx, ds, "simplecnn", 0)
    kw = dict(fractions=(0.5,), retrain=True, train_spec=TrainSpec(epochs=1, batch_size=32))
    r1 = road.evaluate(ctx, ds, trained, "random", **kw)
    n = len(ctx.cache.builds())
    r2 = road.evaluate(ctx, ds, trained, "random", **kw)
    assert r1.retrained and r1.accuracy == r2.accuracy and len(ctx.cache.builds()) == n
    assert [b["kind"] for b in ctx.cache.builds()].count("road") == 1
    # the same fraction at another position of the list is imputed with another noise seed:
    # another training set, so another model, not the cached one of (0.5,)
    r3 = road.evaluate(ctx, ds, trained, "random", **{**kw, "fractions": (0.1, 0.5)})
    assert [b["kind"] for b in ctx.cache.builds()].count("road") == 3
    assert r3.fractions == (0.1, 0.5)


def test_all_tie_map_removes_random_pixels_not_the_top_rows():
    """Issue 17: an all-tie map (input x gradient on an empty background) used to remove the
    first rows first; now each image removes its own seeded random set, the same for any map
    with the same ties (so the method and the random control of a case share it)."""
    v = np.zeros((50, 8, 8))
    orders = road.removal_orders(v)
    removed = road.removed_at(orders["morf"], 0.25, (8, 8))
    assert (removed.reshape(50, -1).sum(axis=1) == 16).all()
    assert not removed[:, :2].all()                                   # index order: rows 0-1
    assert 0.1 < removed[:, :2].mean() < 0.4                          # about 1/4 of the top rows
    np.testing.assert_array_equal(orders["morf"], road.removal_orders(v + 1.0)["morf"])
    np.testing.assert_array_equal(orders["lerf"], orders["morf"][:, ::-1])
