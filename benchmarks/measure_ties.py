"""Issue 17 measurement (not a test): ROAD curves of digits / simplecnn / input x gradient under three tie rules:
index order (the old rule), the seeded tie order (tie seeds 0-4) and the ROAD reference's jitter (values + 1e-4 N(0,1),
5 draws). Run from the repository root: SCALE=small ORDER=morf python benchmarks/measure_ties.py (ORDER=lerf too)."""
import functools, json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from suite.data import load
from suite.data.base import Context
from suite.matrix import load_builtins
from suite.artifacts import trained_model
from suite.metrics import road
from suite.metrics.roar import attributions
import kernels

load_builtins()
import os
SCALE = os.environ.get("SCALE", "small"); ORDER = os.environ.get("ORDER", "morf")
ctx = Context(scale=SCALE, threads=1)
ds = load("digits", ctx)
tm = trained_model(ctx, ds, "simplecnn", 0)
print("test acc", tm.test_acc, "n_test", len(ds.x_test), ds.in_shape)
a = attributions(ctx, ds, tm, "ixg", "test")
v = road.pixel_values(a, "ixg", None)
ties = [(np.unique(r, return_counts=True)[1].max()) for r in v.reshape(len(v), -1)]
print("largest tie run per image: mean %.1f of %d pixels; total pixels in zero ties %d" % (
    np.mean(ties), v[0].size, int((v == 0).sum())))
fr = road.FRACTIONS[SCALE]
def curve(values, **kw):
    return road.road_curve(tm.model, ds.x_test, ds.y_test, values, fractions=fr, order=ORDER, **kw).curve_mean()
out = {}
orig = road.rank_order
road.rank_order = functools.partial(orig, tie_seed=None)
out["index"] = curve(v)
road.rank_order = orig
out["seeded"] = [curve(v) for _ in range(1)]
seeded_other = []
for s in (1, 2, 3, 4):
    road.rank_order = functools.partial(orig, tie_seed=s)
    seeded_other.append(curve(v))
road.rank_order = orig
jit = []
for s in range(5):
    j = np.random.default_rng(100 + s).normal(size=v.shape)
    jit.append(curve(v + 1e-4 * j))
idx, sd0 = out["index"], out["seeded"][0]
jm = np.mean(jit, axis=0)
sm = np.mean([sd0] + seeded_other, axis=0)
rep = {"fractions": list(fr), "index_ties": idx.round(4).tolist(), "seeded_ties_seed0": sd0.round(4).tolist(),
       "seeded_ties_mean_5_seeds": sm.round(4).tolist(), "jitter_mean_5_draws": jm.round(4).tolist(),
       "max|index - jitter_mean|": float(np.abs(idx - jm).max()),
       "max|seeded0 - jitter_mean|": float(np.abs(sd0 - jm).max()),
       "max|seeded_mean - jitter_mean|": float(np.abs(sm - jm).max()),
       "max|index - seeded0|": float(np.abs(idx - sd0).max()),
       "jitter draw spread (max over fractions of max-min)": float(np.ptp(jit, axis=0).max()),
       "seeded spread over tie seeds 0-4": float(np.ptp([sd0] + seeded_other, axis=0).max()),
       "mean MoRF acc: index / seeded0 / jitter": [float(idx.mean()), float(sd0.mean()), float(jm.mean())]}
print(SCALE, ORDER, json.dumps({k: v for k, v in rep.items() if not isinstance(v, list) or k.startswith("mean")}))
print(json.dumps({k: v for k, v in rep.items() if isinstance(v, list)}))
