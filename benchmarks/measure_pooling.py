"""Issue 17 measurement (not a test): the sanity checks on digits / simplecnn (64 test images, small scale) with
normalize_maps before the one-channel pooling fix and after it: the signed Spearman after each cascading step and the
efficient MPRT rise. Run from the repository root: python benchmarks/measure_pooling.py"""
import json
import numpy as np, torch
torch.set_num_threads(1)
from suite.data import load
from suite.data.base import Context
from suite.matrix import load_builtins
from suite.artifacts import trained_model
from suite.metrics import sanity as S
from suite.methods import aggregate, default_aggregation

load_builtins()
ctx = Context(scale="small", threads=1)
ds = load("digits", ctx)
tm = trained_model(ctx, ds, "simplecnn", 0)
x, y, _ = ds.split("test")
x, y = x[:S.N_IMAGES["small"]], y[:S.N_IMAGES["small"]]
new = S.normalize_maps

def old(attr, aggregation):  # the code before the fix
    a = attr.detach().cpu().numpy() if isinstance(attr, torch.Tensor) else np.asarray(attr)
    a = a.astype(np.float32, copy=False)
    if a.shape[1] > 1:
        a = aggregate(a, aggregation)
    a = a[:, 0]
    scale = np.abs(a).reshape(len(a), -1).max(axis=1)
    scale[scale == 0] = 1.0
    return a / scale[:, None, None]

from suite.methods.base import method_params
rows = {}
for m in ("gradient", "guidedbp", "deconvnet", "smoothgrad", "ggcam", "sens_l2", "gradcam", "intgrad"):
    how = default_aggregation(m)
    r = {"aggregation": how}
    for tag, fn in (("before", old), ("after", new)):
        S.normalize_maps = fn
        c = S.cascading_randomization(tm.model, "simplecnn", m, x, y, params=method_params(m, "small"))
        e = S.efficient_mprt(tm.model, "simplecnn", m, x, y, params=method_params(m, "small"))
        r[tag] = {"spearman_last": round(c.similarity["spearman"][-1], 4),
                  "spearman_abs_last": round(c.similarity["spearman_abs"][-1], 4),
                  "verdict": S.sanity_verdict(c).passes, "empirt_rise": round(e.rise, 4),
                  "spearman_curve": [round(v, 3) for v in c.similarity["spearman"]]}
    S.normalize_maps = new
    r["max|d spearman| over steps"] = round(float(np.max(np.abs(np.subtract(r["after"]["spearman_curve"], r["before"]["spearman_curve"])))), 4)
    r["d empirt_rise"] = round(r["after"]["empirt_rise"] - r["before"]["empirt_rise"], 4)
    rows[m] = r
    print(m, json.dumps(r), flush=True)
