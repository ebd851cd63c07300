"""ROAR wall time at small scale and how it splits between attribution, masking and retraining.

    python benchmarks/bench_roar.py [--data digits] [--model simplecnn] [--scale small]
                                    [--methods all|a,b,c] [--fractions 0.1,0.3,0.5,0.7,0.9]
                                    [--cache-dir DIR]

Runs ``suite.metrics.roar.evaluate`` (mode "remove", 1 seed) for every method applicable to
(dataset, model) on a FRESH artifact cache (a temporary folder unless --cache-dir), so nothing is
loaded from an earlier run. The base model is trained first and reported separately (it is shared
with every other metric). Attribution = extracting (and caching) the maps of every training and
test image; masking = the numba rank-and-mask passes; retraining = training one model per
fraction and evaluating it on the masked test set. Then it runs the same selection again and
reports that it retrained nothing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.artifacts import trained_model  # noqa: E402
from suite.data import load  # noqa: E402
from suite.data.base import Context  # noqa: E402
from suite.metrics import roar  # noqa: E402
from suite.registry import DATASETS, METHODS, MODELS, load_builtins, method_applies  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--model", default="simplecnn")
    p.add_argument("--scale", default="small")
    p.add_argument("--methods", default="all")
    p.add_argument("--fractions", default="0.1,0.3,0.5,0.7,0.9")
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    load_builtins()
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="bench_roar_"))
    ctx = Context(scale=args.scale, cache_dir=cache, seeds=(0,))
    ds = load(args.data, ctx)
    t0 = time.perf_counter()
    trained = trained_model(ctx, ds, args.model, 0)
    t_base = time.perf_counter() - t0
    if args.methods == "all":
        methods = [m for m in METHODS if method_applies(METHODS[m], MODELS[args.model],
                                                        DATASETS[args.data]) is None]
    else:
        methods = args.methods.split(",")
    fractions = tuple(float(t) for t in args.fractions.split(","))
    print(f"ROAR on {args.data}/{args.model} at {args.scale} scale, {len(methods)} methods, "
          f"fractions {fractions}, 1 seed, {torch.get_num_threads()} torch threads, cache {cache}")
    print(f"  base model: {t_base:.1f} s (test acc {trained.test_acc:.3f}; shared, not counted)")
    tot = {"attribution": 0.0, "masking": 0.0, "training": 0.0}
    t0 = time.perf_counter()
    for m in methods:
        r = roar.evaluate(ctx, ds, trained, m, mode="remove", fractions=fractions)
        tot["attribution"] += r.timings.attribution_s
        tot["masking"] += r.timings.masking_s
        tot["training"] += r.timings.training_s
        print(f"  {m:12s} acc {[round(float(a), 3) for a in r.curve_mean()]}  attribution "
              f"{r.timings.attribution_s:6.1f} s  masking {r.timings.masking_s:6.3f} s  retraining "
              f"{r.timings.training_s:6.1f} s", flush=True)
    wall = time.perf_counter() - t0
    print(f"  wall {wall:.1f} s: attribution {tot['attribution']:.1f} s "
          f"({100 * tot['attribution'] / wall:.1f}%), masking {tot['masking']:.2f} s "
          f"({100 * tot['masking'] / wall:.2f}%), retraining {tot['training']:.1f} s "
          f"({100 * tot['training'] / wall:.1f}%)")
    t0 = time.perf_counter()
    rebuilt = sum(roar.evaluate(ctx, ds, trained, m, mode="remove", fractions=fractions).retrained
                  for m in methods)
    print(f"  re-run of the same selection: {time.perf_counter() - t0:.1f} s, {rebuilt} retrained")
    return {"wall_s": wall, "base_s": t_base, **{f"{k}_s": v for k, v in tot.items()},
            "rerun_retrained": rebuilt}


if __name__ == "__main__":
    main()
