"""Speed of the perturbation metrics, measured side by side in one run.

1. Overhead: region perturbation (MoRF), pixel flipping and selectivity against the model's forward
   passes that the same number of steps needs (for selectivity also the attribution passes):
   ratio = metric time / (steps + 1) forward passes [+ steps attribution passes]. Target <= 1.15.
2. Against Quantus (optional extra ``bench``): RegionPerturbation, PixelFlipping and Selectivity at
   equal steps, on the same model, images and attributions. Target: ours >= 1.3x faster.
   Quantus's Selectivity does not recompute the map, ours does (one gradient pass per step), so
   that row compares unequal work in Quantus's favour.

Usage: python benchmarks/bench_perturbation.py [--n 64] [--repeat 3] [--threads 1]
Model: an untrained SimpleCNN (speed does not depend on the weights), images from shapes (3x32x32).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from suite.data.shapes import generate
from suite.methods import aggregate, explain
from suite.metrics import perturbation as pt
from suite.metrics.aopc import region_perturbation
from suite.metrics.pixelflip import pixel_flipping
from suite.metrics.selectivity import selectivity
from suite.models import build_model
from _timing import best  # noqa: E402  (benchmarks/ is on sys.path when run as a script)




def side_by_side(fn, ref_fns, repeat: int) -> tuple[float, float]:
    """Best times of ``fn`` and of the reference (sum of ``ref_fns``), measured alternately in each
    repetition, so that load from other processes hits both alike."""
    fn()
    for r in ref_fns:
        r()
    t_fn, t_ref = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        for r in ref_fns:
            r()
        t_ref.append(time.perf_counter() - t)
        t = time.perf_counter()
        fn()
        t_fn.append(time.perf_counter() - t)
    return min(t_fn), min(t_ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images (default 64)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions, best kept (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x_np, _, _ = generate(args.n, 32, seed=0)
    x_np = np.ascontiguousarray(x_np, dtype=np.float32)
    x = torch.from_numpy(x_np)
    model = build_model("simplecnn", 5, (3, 32, 32), seed=0).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    y = model(x).argmax(1)
    attr = aggregate(explain("gradient", model, x, y), "abs_sum").numpy()      # (N, 1, H, W)
    r, steps = 8, 16                                                         # 16 patches of 8x8 = 16 steps
    fill = pt.make_fill("uniform", x_np, seed=0)

    def forwards(k):
        def run():
            with torch.inference_mode():
                for _ in range(k):
                    model(torch.from_numpy(x_np))
        return run

    def grads(k):
        def run():
            for _ in range(k):
                explain("gradient", model, x, y)
        return run

    t_fwd = best(forwards(steps + 1), args.repeat)
    t_grad = best(grads(steps), args.repeat)
    ours = {
        "region perturbation (MoRF, 16 regions 8x8, uniform fill)": (
            lambda: region_perturbation(model, x_np, attr, y, r=r, n_steps=steps, fill=fill, lerf=False),
            [forwards(steps + 1)]),
        "pixel flipping (single pixels, 64 per step, 16 steps)": (
            lambda: pixel_flipping(model, x_np, attr, y, n_steps=steps, fill=fill, r=1), [forwards(steps + 1)]),
        "selectivity (8x8 patches, 16 steps, gradient recomputed)": (
            lambda: selectivity(model, x_np, y, lambda xt, t, rem, rows: aggregate(explain("gradient", model, xt, t),
                                                                               "abs_sum")[:, 0].numpy(),
                                r=r, n_steps=steps, baseline=0.0), [forwards(steps + 1), grads(steps)]),
    }
    print(f"{args.n} images 3x32x32, SimpleCNN, torch threads {args.threads}; best of {args.repeat}")
    print(f"reference: {steps + 1} forward passes {t_fwd * 1e3:.1f} ms; {steps} gradient passes {t_grad * 1e3:.1f} ms")
    print(f"{'metric':60s} {'ours ms':>9s} {'ref ms':>9s} {'ours/ref':>9s}")
    t_ours = {}
    for name, (fn, ref_fns) in ours.items():
        t, ref = side_by_side(fn, ref_fns, args.repeat)
        t_ours[name] = t
        print(f"{name:60s} {t * 1e3:9.1f} {ref * 1e3:9.1f} {t / ref:9.3f}")
    try:
        import quantus
    except ImportError:
        print("quantus is not installed (pip install -e '.[bench]'): comparison skipped")
        return
    warnings.filterwarnings("ignore")
    common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    call = dict(model=model, x_batch=x_np, y_batch=y.numpy(), a_batch=attr, device="cpu", batch_size=args.n,
                softmax=False)
    theirs = {
        "region perturbation (MoRF, 16 regions 8x8, uniform fill)":
            quantus.RegionPerturbation(patch_size=r, regions_evaluation=steps, order="morf",
                                       perturb_baseline="uniform", **common),
        "pixel flipping (single pixels, 64 per step, 16 steps)":
            quantus.PixelFlipping(features_in_step=32 * 32 // steps, perturb_baseline="uniform", **common),
        "selectivity (8x8 patches, 16 steps, gradient recomputed)":
            quantus.Selectivity(patch_size=r, perturb_baseline="uniform", **common),
    }
    print(f"quantus {quantus.__version__}, same model, images, attributions and steps")
    print(f"{'metric':60s} {'ours ms':>9s} {'quantus ms':>10s} {'speed-up':>9s}")
    for name, metric in theirs.items():
        tq = best(lambda: metric(**call), args.repeat)
        print(f"{name:60s} {t_ours[name] * 1e3:9.1f} {tq * 1e3:10.1f} {tq / t_ours[name]:8.2f}x")
    print("(quantus Selectivity does not recompute the map; ours does, one gradient pass per step)")


if __name__ == "__main__":
    main()
