"""Overhead of the suite's extraction over calling captum directly on the same batches.

    python benchmarks/bench_methods.py [--scale small] [--repeats 5] [--batch-size 128]
                                       [--threads 1] [--n 0]

For gradient, intgrad, smoothgrad and gradcam on simplecnn over the digits training set (random
images of the same shape if suite.data is unavailable), both sides run side by side in one
process, alternating, after a warm-up; the table gives medians and suite / captum.

"captum" is what a user of captum would write for the protocol: per batch, the predicted class
(one no-grad forward) or the label, then the captum call, then the map copied into a float32
numpy array. "suite" is ``suite.methods.extract`` (eval-mode context, parameter resolution, the
NaN/shape check, per-image seeded noise for SmoothGrad). For SmoothGrad captum's ``NoiseTunnel``
is given one noise std per batch (0.15 x (max - min) of the batch; it cannot take one per image).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import suite.methods as M  # noqa: E402
from suite.models import build_model, gradcam_module  # noqa: E402

METHODS = ("gradient", "intgrad", "smoothgrad", "gradcam")


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from suite.data import Context, load

        ds = load("digits", Context(scale="smoke"))
        x, y, what = ds.x_train, ds.y_train, "digits train"
    except ImportError:
        g = torch.Generator().manual_seed(0)
        x, y, what = torch.rand(1437, 1, 16, 16, generator=g), torch.randint(0, 10, (1437,), generator=g), \
            "random 1x16x16 (suite.data missing)"
    if n:
        x, y = x[:n], y[:n]
    return x.contiguous(), y, what


def captum_direct(model, method: str, x: torch.Tensor, labels: torch.Tensor | None, params: dict,
                  batch_size: int) -> np.ndarray:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    model.eval()
    out = []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size].clone().requires_grad_(True)
        if labels is None:
            with torch.no_grad():
                t = model(xb).argmax(1)
        else:
            t = labels[s:s + batch_size]
        if method == "gradient":
            a = Saliency(model).attribute(xb, target=t, abs=False)
        elif method == "intgrad":
            a = IntegratedGradients(model).attribute(xb, baselines=0.0, target=t,
                                                     n_steps=params["n_steps"])
        elif method == "smoothgrad":
            std = 0.15 * float(xb.detach().max() - xb.detach().min())
            a = NoiseTunnel(Saliency(model)).attribute(xb, nt_type="smoothgrad", target=t,
                                                       nt_samples=params["n_samples"], stdevs=std,
                                                       abs=False)
        else:
            cam = LayerGradCam(model, gradcam_module(model, "simplecnn")).attribute(
                xb, target=t, relu_attributions=True)
            a = LayerAttribution.interpolate(cam, tuple(xb.shape[2:]), interpolate_mode="bilinear")
        out.append(a.detach().to(torch.float32).numpy())
    return np.concatenate(out)


def suite_extract(model, method, x, labels, params, batch_size) -> np.ndarray:
    return M.extract(model, "simplecnn", method, x, labels=labels,
                     target="predicted" if labels is None else "label", batch_size=batch_size,
                     params=params)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small", choices=("smoke", "small", "paper"),
                    help="method parameters (samples / steps) of this scale (default: small)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per side (default: 5)")
    ap.add_argument("--batch-size", type=int, default=128, help="images per batch (default: 128)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    ap.add_argument("--n", type=int, default=0, help="use the first n images (default: 0 = all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, what = load_images(args.n)
    model = build_model("simplecnn", 10, (1, 16, 16), seed=0).eval()
    print(f"simplecnn on {what}: {len(x)} images, batch {args.batch_size}, scale {args.scale}, "
          f"{args.threads} thread(s), torch {torch.__version__}, {args.repeats} repeats, medians")
    print(f"{'method':<11}{'target':<10}{'suite s':>9}{'captum s':>10}{'ratio':>8}")
    worst = 0.0
    for method in METHODS:
        params = M.method_params(method, args.scale)
        for labels, target in ((None, "predicted"), (y, "label")):
            ours = lambda: suite_extract(model, method, x, labels, params, args.batch_size)  # noqa: E731
            theirs = lambda: captum_direct(model, method, x, labels, params, args.batch_size)  # noqa: E731
            ours(), theirs()                                  # warm-up
            ts, tc = [], []
            for _ in range(args.repeats):
                ts.append(timed(ours))
                tc.append(timed(theirs))
            ms, mc = statistics.median(ts), statistics.median(tc)
            worst = max(worst, ms / mc)
            print(f"{method:<11}{target:<10}{ms:>9.3f}{mc:>10.3f}{ms / mc:>8.3f}")
    print(f"worst ratio {worst:.3f} ({'within' if worst <= 1.10 else 'OVER'} the 1.10 budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
