"""How close the trainer is to its floor, and what training many models at once buys.

    python benchmarks/bench_training.py                    # CPU, every small model, digits + shapes
    python benchmarks/bench_training.py --quick            # 384 images, 1 epoch: a smoke run
    python benchmarks/bench_training.py --device cuda --paper   # + the GPU figures (gpu_check.sh)

Printed side by side, per (dataset, model) with the model's small-scale recipe:

* ``suite``: ``suite.training.train``, seconds per epoch (the best of ``--epochs`` rounds, the
  three sides interleaved one epoch each per round, after a warm-up run);
* ``floor``: the same model on the same batches, already augmented and in memory, only forward,
  cross-entropy, zero_grad, backward, optimizer and scheduler step (its final weights are checked
  bit-identical to the suite's on CPU: the same work in the same order);
* ``loader``: a plain ``torch.utils.data.DataLoader`` loop as a typical attribution repository
  trains: a Dataset that pads, crops and flips one image at a time, shuffled batches,
  ``loss.item()`` and accuracy read each step;
* ``suite/floor`` (lower is better, 1.0 = no overhead) and ``loader/suite`` (the speed-up);
* ``NHWC``: the suite's epoch in channels_last, as ``suite.artifacts.fit_cached`` trains every
  model with a convolution (``suite.training.uses_channels_last``), and ``NCHW/NHWC`` its
  speed-up over the NCHW epoch (the floor and the loader are NCHW);
* the floor's achieved GFLOP/s (convolution and linear FLOPs of forward + backward, counted by
  ``torch.utils.flop_counter``) beside the machine's measured fp32 matmul GFLOP/s.

On CPU the seconds are process CPU time (``time.process_time``: all threads of this process),
which other processes' load inflates far less than wall time; with ``--threads 1`` it is the work
done. On CUDA they are wall time after a device synchronisation.

``--many`` (default 1,5,15): K independent retrainings of one ROAR/KAR case's architecture
(simplecnn on digits, the retraining recipe) trained one after another (``train`` under the run's
threads) and at once (``train_many``: on CPU one single-threaded training per OS thread, as many
as ``--threads``); wall and CPU time, and the speed-up of at once over one after another.

``--paper`` (meant for a GPU): images/s of ResNet8 on CIFAR-10-sized random data (50,000 images
of 3x32x32, the paper recipe: batch 128, flip + crop) in fp32 and in bf16 + channels_last, the
time of one 40-epoch retraining (projected from measured epochs), and the projected wall time of
Hooker et al.'s protocol (9 methods x 5 fractions x 5 seeds retrainings) with ``train_many``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.models import build_model  # noqa: E402
from suite.training import (TrainJob, _apply_augment, _epoch_draws, _optimizer,  # noqa: E402
                            concurrency, recipe, torch_threads, train, train_many,
                            uses_channels_last)

MODELS = ("simplecnn", "mlp", "resnet8", "camcnn", "cbamcnn", "resattn", "warn")
DATASETS = ("digits", "shapes")


class Clock:
    """CPU time of this process on CPU, synchronised wall time on CUDA; wall time always."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def now(self) -> tuple[float, float]:
        if self.cuda:
            torch.cuda.synchronize()
        return time.process_time(), time.perf_counter()

    def main(self, cpu: float, wall: float) -> float:
        return wall if self.cuda else cpu


def matmul_gflops(device: torch.device, n: int = 1024, dtype=torch.float32, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    clock, best = Clock(device), math.inf
    a @ b
    for _ in range(reps):
        c0, w0 = clock.now()
        a @ b
        c1, w1 = clock.now()
        best = min(best, clock.main(c1 - c0, w1 - w0))
    return 2 * n ** 3 / best / 1e9


def step_flops(model, xb, yb) -> int:
    """Convolution + linear FLOPs of one forward + backward on the batch (torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(m(xb), yb).backward()
    return counter.get_total_flops()


# -- the three sides --------------------------------------------------------------------------

def suite_epochs(spec, model, x, y, device, seed=0, channels_last=False) -> tuple[list[float], torch.nn.Module]:
    clock = Clock(device)
    marks = [clock.now()]
    res = train(spec, model, x, y, device=device, seed=seed, channels_last=channels_last,
                progress=lambda rec: marks.append(clock.now()))
    return [clock.main(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])], res.model


def floor_batches(spec, x, y, device, seed=0) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """The suite's batches (same permutations and augmentation draws), made beforehand."""
    gen = torch.Generator().manual_seed(seed)
    xd, yd, bs, out = x.to(device), y.to(device), spec.batch_size, []
    for _ in range(spec.epochs):
        perm, shifts, flips = _epoch_draws(spec, len(x), gen, device)
        epoch = []
        for i in range(math.ceil(len(x) / bs)):
            sl = slice(i * bs, (i + 1) * bs)
            xb = xd[perm[sl]]
            if shifts is not None:
                xb = _apply_augment(xb, shifts[sl], None if flips is None else flips[sl])
            epoch.append((xb, yd[perm[sl]]))
        out.append(epoch)
    return out


def floor_epochs(spec, model, data, device) -> tuple[list[float], torch.nn.Module]:
    clock = Clock(device)
    model.to(device).train()
    opt, sched = _optimizer(spec, [p for p in model.parameters() if p.requires_grad],
                            spec.epochs * len(data[0]))
    times = []
    for epoch in data:
        c0, w0 = clock.now()
        for xb, yb in epoch:
            loss = F.cross_entropy(model(xb), yb, label_smoothing=spec.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        c1, w1 = clock.now()
        times.append(clock.main(c1 - c0, w1 - w0))
    return times, model


class _PerImage(torch.utils.data.Dataset):
    """A typical repository's Dataset: one image at a time, pad + random crop + flip."""

    def __init__(self, x, y, how, pad=2):
        self.x, self.y, self.how, self.pad = x, y, how, pad

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = self.x[i]
        if self.how != "none":
            p, (_, h, w) = self.pad, img.shape
            padded = F.pad(img[None], (p, p, p, p), mode="reflect")[0]
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            img = padded[:, dy:dy + h, dx:dx + w]
            if self.how == "flip_crop" and torch.rand(()) < 0.5:
                img = img.flip(-1)
        return img, self.y[i]


def loader_epochs(spec, model, x, y, device, seed=0) -> list[float]:
    clock = Clock(device)
    torch.manual_seed(seed)
    dl = torch.utils.data.DataLoader(_PerImage(x, y, spec.augment), batch_size=spec.batch_size,
                                     shuffle=True, num_workers=0)
    model.to(device).train()
    opt, sched = _optimizer(spec, list(model.parameters()), spec.epochs * len(dl))
    times = []
    for _ in range(spec.epochs):
        c0, w0 = clock.now()
        total, correct = 0.0, 0
        for xb, yb in dl:
            xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=spec.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(yb)
            correct += (out.argmax(1) == yb).sum().item()
        c1, w1 = clock.now()
        times.append(clock.main(c1 - c0, w1 - w0))
    return times


def same_weights(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


# -- sections ---------------------------------------------------------------------------------

def bench_models(args, device) -> list[dict]:
    from suite.data import Context, load

    rows = []
    print(f"\n== trainer vs floor vs DataLoader loop ({'CPU seconds' if device.type == 'cpu' else 'seconds'}"
          f" per epoch, best of {args.epochs} interleaved rounds; small recipes) ==")
    print(f"{'dataset':8} {'model':10} {'images':>6} {'suite':>8} {'floor':>8} {'loader':>8} "
          f"{'suite/floor':>11} {'loader/suite':>12} {'GFLOP/s':>8} {'same':>5} {'NHWC':>8} "
          f"{'NCHW/NHWC':>9}")
    for dsname in args.datasets:
        ds = load(dsname, Context(scale="small"))
        x, y = ds.x_train.contiguous(), ds.y_train
        if args.images:
            x, y = x[:args.images], y[:args.images]
        for name in args.models:
            rec = recipe(dsname, name, "small")
            if rec.unsupported:
                continue
            spec = replace(rec.train, epochs=args.epochs)
            init = build_model(name, ds.num_classes, ds.in_shape, 0)
            # warm-up: kernels, allocator, the batch sizes of both sides
            train(replace(spec, epochs=1), copy.deepcopy(init), x[:2 * spec.batch_size + 7],
                  y[:2 * spec.batch_size + 7], device=device)
            # the sides interleaved, one epoch each per round (the machine's load drifts): the
            # best round of each; the weights of a full run of both are compared first
            _, s_model = suite_epochs(spec, copy.deepcopy(init), x, y, device)
            data = floor_batches(spec, x, y, device)
            _, f_model = floor_epochs(spec, copy.deepcopy(init), data, device)
            one = replace(spec, epochs=1)
            s_times, f_times, l_times, c_times = [], [], [], []
            nhwc = uses_channels_last(init)     # what the suite trains it with (fit_cached)
            for r in range(args.epochs):
                s_times += suite_epochs(one, copy.deepcopy(init), x, y, device, seed=r)[0]
                if nhwc:
                    c_times += suite_epochs(one, copy.deepcopy(init), x, y, device, seed=r,
                                            channels_last=True)[0]
                f_times += floor_epochs(one, copy.deepcopy(init), data[r:r + 1], device)[0]
                if not args.no_loader:
                    l_times += loader_epochs(one, copy.deepcopy(init), x, y, device, seed=r)
            l_times = l_times or [math.nan]
            flops = step_flops(init.to(device), *data[0][0]) * len(data[0])
            del data
            c_times = c_times or [math.nan]
            s, f, lo, cl = (min(t) for t in (s_times, f_times, l_times, c_times))   # least disturbed
            same = same_weights(s_model, f_model)
            row = {"dataset": dsname, "model": name, "images": len(x), "suite_s": s, "floor_s": f,
                   "loader_s": lo, "suite_over_floor": s / f, "loader_over_suite": lo / s,
                   "floor_gflops": flops / f / 1e9, "same_weights": same, "nhwc_s": cl,
                   "nchw_over_nhwc": s / cl}
            rows.append(row)
            print(f"{dsname:8} {name:10} {len(x):6d} {s:8.3f} {f:8.3f} {lo:8.3f} {s / f:11.3f} "
                  f"{lo / s:12.2f} {flops / f / 1e9:8.2f} {str(same):>5} {cl:8.3f} {s / cl:9.2f}",
                  flush=True)
    return rows


def bench_many(args, device) -> list[dict]:
    from suite.data import Context, load
    from suite.metrics.roar import retrain_spec

    ds = load("digits", Context(scale="small"))
    spec = retrain_spec("digits", "simplecnn", "small")
    if args.many_epochs:
        spec = replace(spec, epochs=args.many_epochs)
    workers, per = concurrency(device, args.threads)
    print(f"\n== K retrainings (simplecnn on digits, {spec.epochs} epochs, {len(ds.x_train)} images):"
          f" one after another vs train_many ({workers} workers x {per} thread); speed-up: the "
          f"side's wall time over train_many's ==")
    print(f"{'K':>3} {'side':28} {'wall s':>8} {'cpu s':>8} {'speed-up (wall)':>15} {'= 1 thr':>9}")
    # K jobs: seeds 0..K-1 (each its own init and batch order), one warm-up training first
    train(replace(spec, epochs=1), build_model("simplecnn", 10, ds.in_shape, 0), ds.x_train[:300],
          ds.y_train[:300], device=device)
    clock = Clock(device)

    def jobs(k):
        return [TrainJob(spec, build_model("simplecnn", 10, ds.in_shape, s), ds.x_train, ds.y_train,
                         ds.x_test, ds.y_test, seed=s) for s in range(k)]

    def one_after_another(k, threads):
        c0, w0 = clock.now()
        with torch_threads(threads):
            res = [train(j.spec, j.model, j.x, j.y, x_test=j.x_test, y_test=j.y_test, seed=j.seed,
                         device=device) for j in jobs(k)]
        c1, w1 = clock.now()
        return res, c1 - c0, w1 - w0

    rows = []
    for k in args.many:
        sides = {}
        if args.threads != per or device.type != "cpu":
            sides[f"one after another, {args.threads} thr"] = one_after_another(k, args.threads)
        sides[f"one after another, {per} thr"] = one_after_another(k, per)
        c0, w0 = clock.now()
        many = train_many(jobs(k), device=device, threads=args.threads)
        c1, w1 = clock.now()
        ref = list(sides.values())[-1]
        row = {"k": k, "sides": {}, "test_acc_many": [r.test_acc for r in many]}
        for name, (res, c, w) in {**sides, f"train_many ({workers} x {per} thr)": (many, c1 - c0, w1 - w0)}.items():
            same = (all(same_weights(a.model, b.model) for a, b in zip(res, ref[0]))
                    if device.type == "cpu" else None)
            row["sides"][name] = {"wall_s": w, "cpu_s": c, "same_as_1_thread": same}
            print(f"{k:3d} {name:28} {w:8.2f} {c:8.2f} {w / (w1 - w0):15.2f} "
                  f"{'' if same is None else str(same):>9}", flush=True)
        row["speedup_wall"] = ref[2] / (w1 - w0)
        rows.append(row)
    return rows


def bench_paper(args, device, many_rows) -> dict:
    """ResNet8 on CIFAR-10-sized random data with the paper recipe; Hooker's protocol projected."""
    n = args.paper_images
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    spec40 = recipe("cifar10", "resnet8", "paper").train
    print(f"\n== paper scale: ResNet8, {n} random 3x32x32 images, batch {spec40.batch_size}, "
          f"{spec40.augment}, {spec40.epochs} epochs ==")
    out = {}
    init = build_model("resnet8", 10, (3, 32, 32), 0)
    variants = [("fp32", "fp32", False)]
    if device.type == "cuda":
        variants.append(("bf16+channels_last", "bf16", True))
    for label, precision, cl in variants:
        spec = replace(spec40, epochs=args.paper_epochs)
        train(replace(spec, epochs=1), copy.deepcopy(init), x[:1024], y[:1024], device=device,
              precision=precision, channels_last=cl)
        clock = Clock(device)
        marks = [clock.now()]
        res = train(spec, copy.deepcopy(init), x, y, x_test=x[:10_000], y_test=y[:10_000],
                    device=device, precision=precision, channels_last=cl,
                    progress=lambda rec: marks.append(clock.now()))
        end = clock.now()
        epoch = statistics.median(clock.main(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:]))
        tail = clock.main(end[0] - marks[-1][0], end[1] - marks[-1][1])   # the accuracy passes
        one = spec40.epochs * epoch + tail
        out[label] = {"images_per_s": n / epoch, "epoch_s": epoch, "retrain_40_s": one}
        print(f"{label:20} {n / epoch:10.0f} images/s   epoch {epoch:7.2f} s   one {spec40.epochs}-epoch "
              f"retraining {one:8.1f} s ({one / 60:.1f} min)", flush=True)
    best = min(out.values(), key=lambda r: r["retrain_40_s"])
    speedup = max([r["speedup_wall"] for r in many_rows if r["k"] > 1] or [1.0])
    runs = 9 * 5 * 5
    hours = runs * best["retrain_40_s"] / speedup / 3600
    out["hooker"] = {"retrainings": runs, "many_speedup": speedup, "hours": hours}
    print(f"Hooker et al.'s protocol, 9 methods x 5 fractions x 5 seeds = {runs} retrainings: "
          f"{runs * best['retrain_40_s'] / 3600:.2f} h one after another, {hours:.2f} h with "
          f"train_many (x{speedup:.2f} measured above)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--epochs", type=int, default=2, help="measured epochs per side (default 2)")
    p.add_argument("--images", type=int, default=0, help="training images (default: all)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--many", default="1,5,15", help="K values, '' to skip (default 1,5,15)")
    p.add_argument("--many-epochs", type=int, default=2,
                   help="epochs of each of the K retrainings (default 2; 0: the recipe's 8)")
    p.add_argument("--no-loader", action="store_true", help="skip the DataLoader side")
    p.add_argument("--paper", action="store_true", help="the paper-scale ResNet8 figures")
    p.add_argument("--paper-images", type=int, default=50_000)
    p.add_argument("--paper-epochs", type=int, default=2, help="measured epochs (default 2)")
    p.add_argument("--quick", action="store_true", help="384 images, 1 epoch, K = 1, 2")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.many = [int(k) for k in args.many.split(",") if k]
    if args.quick:
        args.images, args.epochs, args.many, args.many_epochs = 384, 1, [1, 2], 1
        args.paper_images, args.paper_epochs = 2048, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    gf = matmul_gflops(device)
    extra = f", bf16 {matmul_gflops(device, 4096, torch.bfloat16):.0f}" if device.type == "cuda" else ""
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}),"
          f" torch {torch.__version__}, {args.threads} thread(s); matmul fp32 {gf:.1f} GFLOP/s{extra}")
    result = {"device": str(device), "threads": args.threads, "matmul_gflops": gf,
              "models": bench_models(args, device) if args.models and args.datasets else []}
    result["many"] = bench_many(args, device) if args.many else []
    if args.paper:
        result["paper"] = bench_paper(args, device, result["many"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
