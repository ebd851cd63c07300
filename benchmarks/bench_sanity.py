"""Cascading randomization: our test vs the attribution passes it needs vs Quantus's MPRT.

    python benchmarks/bench_sanity.py [--images 128] [--method gradient] [--repeats 3]

One trained model (simplecnn on shapes, smoke recipe, from the artifact cache: $SALIENCYBENCH_CACHE
or .cache/saliencybench), one method, N test images. Printed side by side in one run (best of
--repeats, interleaved, after a warm-up round that compiles the numba kernels):

* attribution passes: the trained model's prediction (the targets: one forward pass) and
  ``extract`` on the trained model and on each cascading step's model (models built beforehand,
  so only the passes are timed): the floor of any implementation;
* ours: ``cascading_randomization`` (copies, re-initialisation, passes, four batched similarity
  measures, accuracy per step); ratio to the passes (target <= 1.2);
* Quantus: ``quantus.MPRT`` (or ``ModelParameterRandomisation``) with Spearman only, the same
  explain function (our ``explain``) and the same layers (every module owning parameters, which is
  what Quantus randomizes); ratio to ours (target >= 2).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.artifacts import trained_model  # noqa: E402
from suite.data import load  # noqa: E402
from suite.data.base import Context  # noqa: E402
from suite.methods import explain, extract, method_params, predict  # noqa: E402
from suite.metrics import sanity as S  # noqa: E402
from suite.metrics.randomization import cascading_models  # noqa: E402
from suite.registry import load_builtins  # noqa: E402
from _timing import best, best_interleaved  # noqa: E402  (benchmarks/ is on sys.path when run as a script)




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--method", default="gradient")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-quantus", action="store_true")
    args = ap.parse_args()
    load_builtins()
    cache = Path(os.environ.get("SALIENCYBENCH_CACHE", ".cache/saliencybench"))
    ctx = Context(scale="smoke", cache_dir=cache)
    ds = load(args.dataset, ctx)
    tm = trained_model(ctx, ds, "simplecnn", 0)
    model = tm.model
    x, y, _ = ds.split("test")
    x, y = x[:args.images], y[:args.images]
    params = method_params(args.method, "smoke")
    layers = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    target = predict(model, x)
    print(f"torch threads {torch.get_num_threads()}, {args.dataset} simplecnn, {args.method}, "
          f"{len(x)} images {tuple(x.shape[1:])}, {len(layers)} layers: {', '.join(layers)}")

    models = [model] + [copy.deepcopy(m) for _, m in cascading_models(model, layers)]

    def passes():
        predict(model, x)  # the trained model's classes: the targets of every step
        for m in models:
            extract(m, "simplecnn", args.method, x, labels=target, target="label", params=params,
                    batch_size=128)

    def ours():
        return S.cascading_randomization(model, "simplecnn", args.method, x, y, layers=layers,
                                         params=params, batch_size=128)

    cpu: dict[str, float] = {}
    t = best_interleaved({"passes": passes, "ours": ours}, args.repeats, cpu=cpu)
    t_pass, t_ours = t["passes"], t["ours"]
    c_pass, c_ours = cpu["passes"], cpu["ours"]
    print(f"attribution passes ({len(models)} + targets):  {t_pass * 1e3:8.1f} ms")
    print(f"ours (cascade, 4 measures):          {t_ours * 1e3:8.1f} ms   "
          f"ours / passes = {t_ours / t_pass:.2f}  (target <= 1.2)")
    print(f"process CPU time (all threads): passes {c_pass * 1e3:.1f} ms, ours {c_ours * 1e3:.1f} ms, "
          f"ratio {c_ours / c_pass:.2f} (the work done; other processes' load changes it much less "
          "than wall time)")
    if args.no_quantus:
        return
    import quantus

    cls = getattr(quantus, "MPRT", None) or quantus.ModelParameterRandomisation

    def explain_func(model, inputs, targets, **kw):
        xt = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        tt = torch.as_tensor(np.asarray(targets)).long()
        return explain(args.method, model, xt, tt, model_name="simplecnn", **params).numpy()

    x_np, y_np = x.numpy(), target.numpy()

    def quantus_run():
        metric = cls(similarity_func=quantus.similarity_func.correlation_spearman,
                     layer_order="top_down", disable_warnings=True, display_progressbar=False)
        return metric(model=copy.deepcopy(model), x_batch=x_np, y_batch=y_np, a_batch=None,
                      explain_func=explain_func, explain_func_kwargs={}, device="cpu",
                      batch_size=128, channel_first=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantus_run()
        t_q = best(quantus_run, args.repeats)
    print(f"quantus {cls.__name__} {quantus.__version__} (spearman only): {t_q * 1e3:8.1f} ms   "
          f"quantus / ours = {t_q / t_ours:.2f}  (target >= 2)")


if __name__ == "__main__":
    main()
