"""ROAD over many fractions: suite.metrics.road vs Quantus's ROAD vs the forward passes alone.

    python benchmarks/bench_road.py [--data digits|shapes] [--n 1000] [--fractions 50]
                                    [--quantus-n 100] [--threads 0]

Same model (simplecnn, seeded init; its weights do not change the cost), same images (the first
``--n`` digits images, 1x16x16, or shapes test images, 3x32x32), same attribution (Sobel edges
summed over channels), same 50 fractions (Quantus's default percentages 1, 3, ..., 99), MoRF,
noisy linear imputation with noise 0.01, accuracy per fraction.

- "suite": ``road.road_curve`` (one parallel numba imputation of all images per fraction, one
  batched forward; plus one forward on the unmodified images for the t = 0 point), after a
  warm-up call (JIT compilation is not timed).
- "forward only": the same batched forwards (softmax, argmax, true-class probability) on the
  unmodified images, once per fraction: the floor any ROAD implementation pays.
- The two are timed interleaved (best of ``--repeats`` rounds, each round one call of each), so
  that a change of machine load during the run hits both alike; the process CPU time of each
  (best round) is printed too: the work done, which other processes' load changes much less.
- "quantus": ``quantus.ROAD(noise=0.01)`` (a scipy sparse solve per image and fraction), on the
  first ``--quantus-n`` images only (it is slow); the suite is timed on the same subset for the
  ratio. Runs side by side in one process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.methods.controls import sobel_magnitude  # noqa: E402
from suite.metrics import road  # noqa: E402
from suite.models import build_model  # noqa: E402
from _timing import best, best_interleaved  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _data(name: str, n: int):
    from suite.data import load
    from suite.data.base import Context

    ds = load(name, Context(scale="small"))
    x = torch.cat([ds.x_test, ds.x_train])[:n].contiguous()
    y = torch.cat([ds.y_test, ds.y_train])[:n].contiguous()
    return x, y, ds.num_classes




def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", choices=("digits", "shapes"))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--fractions", type=int, default=50)
    p.add_argument("--quantus-n", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, k = _data(args.data, args.n)
    model = build_model("simplecnn", k, tuple(x.shape[1:]), 0).eval()
    values = sobel_magnitude(x).sum(1).numpy().astype(np.float64)
    pct = list(np.linspace(1, 99, args.fractions))
    fr = tuple(float(q) / 100 for q in pct)
    xn, yt = x.numpy(), y
    road.road_curve(model, xn[:8], yt[:8], values[:8], fractions=fr[:3])   # JIT warm-up

    def ours():
        return road.road_curve(model, xn, yt, values, fractions=fr, order="morf")

    def forward_only():
        for _ in fr:
            road._scores(model, xn, yt, "cpu", 1024)

    cpu: dict[str, float] = {}
    t = best_interleaved({"suite": ours, "forward": forward_only}, args.repeats, cpu=cpu)
    t_ours, t_fwd = t["suite"], t["forward"]
    c_ours, c_fwd = cpu["suite"], cpu["forward"]
    out = {"data": args.data, "n": len(x), "shape": list(x.shape[1:]), "fractions": len(fr),
           "threads": torch.get_num_threads(), "suite_s": t_ours, "forward_only_s": t_fwd,
           "suite_over_forward": t_ours / t_fwd, "suite_cpu_s": c_ours, "forward_only_cpu_s": c_fwd}
    print(f"ROAD, {len(fr)} fractions, {len(x)} {args.data} images {tuple(x.shape[1:])}, "
          f"simplecnn, {torch.get_num_threads()} torch threads")
    print(f"  suite road_curve      {t_ours:8.3f} s")
    print(f"  forward passes alone  {t_fwd:8.3f} s   suite / forward = {t_ours / t_fwd:.2f}x")
    print(f"  process CPU time: suite {c_ours:.3f} s, forward {c_fwd:.3f} s, ratio {c_ours / c_fwd:.2f} "
          f"(the work done; less sensitive to other processes' load than wall time)")

    nq = min(args.quantus_n, len(x))
    if nq:
        try:
            import quantus
        except ImportError as err:
            print(f"  quantus: not installed ({err}); skipped")
            return out
        metric = quantus.ROAD(noise=0.01, percentages=pct, display_progressbar=False,
                              disable_warnings=True, return_aggregate=False)
        xq, yq, aq = xn[:nq], y[:nq].numpy(), values[:nq, None].astype(np.float32)
        try:
            t0 = time.perf_counter()
            q = metric(model=model, x_batch=xq, y_batch=yq, a_batch=aq, device="cpu",
                       batch_size=nq)
            t_q = time.perf_counter() - t0
        except Exception as err:   # report how Quantus fails on this input, do not hide it
            print(f"  quantus ROAD failed on {args.data} {tuple(x.shape[1:])}: "
                  f"{type(err).__name__}: {err}")
            out["quantus_error"] = f"{type(err).__name__}: {err}"
            return out
        t_sub = best(lambda: road.road_curve(model, xq, y[:nq], values[:nq], fractions=fr),
                      args.repeats)
        ours_q = road.road_curve(model, xq, y[:nq], values[:nq], fractions=fr).curve_mean()
        qv = np.array([q[p_] for p_ in pct]) if isinstance(q, dict) else np.asarray(q)
        out.update({"quantus_n": nq, "quantus_s": t_q, "suite_subset_s": t_sub,
                    "quantus_over_suite": t_q / t_sub,
                    "max_abs_curve_diff": float(np.max(np.abs(qv.ravel()[:len(fr)] - ours_q)))
                    if qv.size >= len(fr) else None})
        print(f"  on the first {nq} images: quantus {t_q:.3f} s, suite {t_sub:.3f} s, "
              f"quantus / suite = {t_q / t_sub:.1f}x")
        if out["max_abs_curve_diff"] is not None:
            print(f"  largest difference between the two accuracy curves: "
                  f"{out['max_abs_curve_diff']:.3f} (different noise draws and tie-breaking)")
    return out


if __name__ == "__main__":
    main()
