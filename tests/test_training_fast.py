"""The fast trainer against the reference loop it replaced (commit 12d2318's ``train``, copied
below verbatim but for names): the same seed gives bit-identical weights, history and accuracies
on CPU; the augmentation's single gather gives the reference's pad + crop + flip; ``train_many``
gives each job's ``train`` result alone under one thread; cache-key numerics; the CUDA path
(bf16 autocast, channels_last, no per-step host synchronisation) within stated tolerances, skipped
without CUDA."""
from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suite.models import build_model
from suite.specs import TrainSpec
from suite.training import (TrainJob, TrainResult, _augment, concurrency, evaluate, numerics,
                            run_concurrently, torch_threads, train, train_many)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# -- the reference: suite/training.py's loop before the fast path (verbatim) ---------------------

def _ref_augment(xb: torch.Tensor, how: str, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    if how == "none":
        return xb
    b, c, h, w = xb.shape
    dev = xb.device
    shifts = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen).to(dev)
    padded = F.pad(xb, (pad, pad, pad, pad), mode="reflect")
    rows = (shifts[:, 0, None] + torch.arange(h, device=dev)[None])       # (b, h)
    cols = (shifts[:, 1, None] + torch.arange(w, device=dev)[None])       # (b, w)
    out = padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if how == "flip_crop":
        flip = (torch.rand(b, generator=gen) < 0.5).to(dev)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


@torch.no_grad()
def _ref_evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: str | torch.device = "cpu",
                  batch_size: int = 1024) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        correct += int((model(xb).argmax(1) == y[i:i + batch_size].to(device)).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def _ref_train(spec: TrainSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
               device: str | torch.device = "cpu", seed: int = 0, label: str = "",
               progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` in place on (x, y) and return it with its train/test accuracy."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"train: x has {len(x)} images and y {len(y)} labels; need equal, > 0")
    t0 = time.perf_counter()
    model.to(device).train()
    xd, yd = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(seed)
    n = len(xd)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total = spec.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=True,
                              weight_decay=spec.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    warm = max(1, int(spec.warmup_frac * total))

    def lr_at(step: int) -> float:
        if spec.schedule == "constant":
            return 1.0
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history: list[dict] = []
    step = 0
    for epoch in range(spec.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum, correct = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * spec.batch_size:(i + 1) * spec.batch_size]
            xb = _ref_augment(xd[idx], spec.augment, gen)
            out = model(xb)
            loss = F.cross_entropy(out, yd[idx], label_smoothing=spec.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yd[idx]).sum())
        rec = {"epoch": epoch + 1, "loss": loss_sum / n, "train_acc_running": correct / n,
               "seconds": time.perf_counter() - t0}
        history.append(rec)
        if progress is not None:
            progress(rec)
    if not math.isfinite(history[-1]["loss"]):
        raise FloatingPointError(f"training {label or 'model'} diverged (loss {history[-1]['loss']}); "
                                 f"lower TrainSpec.lr (now {spec.lr})")
    model.eval()
    train_acc = _ref_evaluate(model, x, y, device=device)
    test_acc = _ref_evaluate(model, x_test, y_test, device=device) if x_test is not None else None
    return TrainResult(model, train_acc, test_acc, time.perf_counter() - t0, history)




# -- helpers -----------------------------------------------------------------------------------

def _toy(n=100, c=1, size=8, seed=0):
    """Two classes: is the top half brighter? n not a multiple of the batch (a short last batch)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size, size, generator=g)
    y = (x[:, :, :size // 2].mean((1, 2, 3)) > x[:, :, size // 2:].mean((1, 2, 3))).long()
    return x, y


def _assert_same_model(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs (max {float((sa[k] - sb[k]).abs().max())})"


def _same_run(r: TrainResult, ref: TrainResult):
    _assert_same_model(r.model, ref.model)
    assert (r.train_acc, r.test_acc) == (ref.train_acc, ref.test_acc)
    for h, g in zip(r.history, ref.history, strict=True):
        assert (h["loss"], h["train_acc_running"]) == (g["loss"], g["train_acc_running"])


# -- CPU: the same bits as the reference ---------------------------------------------------------

@pytest.mark.parametrize("model,spec,c,size", [
    ("simplecnn", TrainSpec(epochs=2, batch_size=32, lr=0.05, augment="crop"), 1, 8),
    ("resnet8", TrainSpec(epochs=2, batch_size=48, lr=0.05, augment="flip_crop", label_smoothing=0.1),
     3, 8),
    # batches of 5 x 27 floats do not start 64-byte aligned: copied out of the epoch's tensor
    ("mlp", TrainSpec(epochs=2, batch_size=5, optimizer="adam", lr=3e-3, weight_decay=0.0,
                      schedule="constant", augment="flip_crop"), 3, 3),
])
def test_train_is_bit_identical_to_the_reference_loop(model, spec, c, size):
    x, y = _toy(c=c, size=size)
    xt, yt = _toy(40, c=c, size=size, seed=1)
    init = build_model(model, 2, (c, size, size), seed=5)
    with torch_threads(1):
        ref = _ref_train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=5)
        new = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=5)
    _same_run(new, ref)
    assert not torch.equal(init.state_dict()[next(iter(init.state_dict()))],
                           new.model.state_dict()[next(iter(init.state_dict()))])   # it trained


def test_batch_by_batch_gather_of_a_large_training_set_gives_the_same_bits(monkeypatch):
    import suite.training as tr

    x, y = _toy(c=3)
    spec = TrainSpec(epochs=2, batch_size=32, lr=0.05, augment="flip_crop")
    init = build_model("simplecnn", 2, (3, 8, 8), seed=1)
    with torch_threads(1):
        whole = train(spec, copy.deepcopy(init), x, y, seed=1)
        monkeypatch.setattr(tr, "EPOCH_COPY_BYTES", 0)
        batched = train(spec, copy.deepcopy(init), x, y, seed=1)
    _same_run(batched, whole)


@pytest.mark.parametrize("how", ["none", "crop", "flip_crop"])
@pytest.mark.parametrize("shape", [(7, 3, 6, 9), (4, 1, 3, 3)])
def test_augment_gather_equals_pad_crop_flip(how, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(_augment(x, how, g1), _ref_augment(x, how, g2))
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))  # same draws used


def test_augment_rejects_a_pad_as_large_as_the_image():
    with pytest.raises(ValueError, match="pad 2 needs images larger than 2 pixels, got 2x2"):
        _augment(torch.zeros(1, 1, 2, 2), "crop", torch.Generator())


def test_train_rejects_bad_precision():
    x, y = _toy(8)
    m = build_model("mlp", 2, (1, 8, 8), seed=0)
    with pytest.raises(ValueError, match=r"precision='fp16'; allowed: \('fp32', 'bf16'\)"):
        train(TrainSpec(epochs=1), m, x, y, precision="fp16")
    with pytest.raises(ValueError, match="precision='bf16' needs a CUDA device, got cpu"):
        train(TrainSpec(epochs=1), m, x, y, precision="bf16")


def test_numerics_keys_of_default_training_are_unchanged():
    # the keys of models trained before the fast path stay valid: no new field by default
    assert numerics("cpu", 2) == {"device": "cpu", "threads": 2}
    assert numerics("cuda", 2) == {"device": "cuda"}
    assert numerics("cuda", 1, precision="bf16", channels_last=True) == {
        "device": "cuda", "precision": "bf16", "channels_last": True}
    with pytest.raises(ValueError, match="precision='half'"):
        numerics("cpu", 1, precision="half")


def test_channels_last_on_cpu_is_deterministic_and_within_tolerance_of_nchw():
    # the suite trains every CNN in channels_last (suite.artifacts.fit_cached): other oneDNN
    # kernels, so not NCHW's bits, but the same update up to float reordering (one step from the
    # same weights: within 1 % of the largest change per tensor; measured 0.16 % at most, on the
    # first convolution, through BatchNorm's backward), the same bits on a second run,
    # weights stored NCHW again, and a whole training to the same accuracy within 0.06
    x, y, xt, yt = _cuda_toy()
    init = build_model("resnet8", 2, (3, 16, 16), seed=0)
    one = TrainSpec(epochs=1, batch_size=512, lr=0.05, schedule="constant")
    with torch_threads(1):
        ref = train(one, copy.deepcopy(init), x, y, seed=0)
        fast = train(one, copy.deepcopy(init), x, y, seed=0, channels_last=True)
        again = train(one, copy.deepcopy(init), x, y, seed=0, channels_last=True)
    _assert_same_model(fast.model, again.model)
    start = init.state_dict()
    for (k, a), b in zip(ref.model.state_dict().items(), fast.model.state_dict().values()):
        if a.is_floating_point():
            d_ref, d_fast = a - start[k], b - start[k]
            err = float((d_fast - d_ref).abs().max())
            assert err <= 0.01 * float(d_ref.abs().max()) + 1e-7, (k, err)
    assert all(p.is_contiguous() for p in fast.model.parameters())
    spec = TrainSpec(epochs=4, batch_size=64, lr=0.05, augment="flip_crop")
    with torch_threads(1):
        a = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=0)
        b = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=0, channels_last=True)
    assert a.test_acc > 0.8 and abs(a.test_acc - b.test_acc) <= 0.06


def test_the_suite_trains_cnns_in_channels_last_and_keys_it(tmp_path):
    from suite.artifacts import fit_spec
    from suite.data.base import Context
    from suite.training import uses_channels_last

    assert uses_channels_last(build_model("simplecnn", 2, (1, 8, 8), seed=0))
    assert not uses_channels_last(build_model("mlp", 2, (1, 8, 8), seed=0))
    ctx = Context(scale="smoke", cache_dir=tmp_path, threads=1)
    kw = dict(spec={"dataset": "toy"}, in_shape=(1, 8, 8), num_classes=2,
              train_spec=TrainSpec(epochs=1), seed=0)
    cnn = fit_spec(ctx, model=build_model("simplecnn", 2, (1, 8, 8), seed=0), model_name="simplecnn", **kw)
    mlp = fit_spec(ctx, model=build_model("mlp", 2, (1, 8, 8), seed=0), model_name="mlp", **kw)
    assert cnn["numerics"] == {"device": "cpu", "threads": 1, "channels_last": True}
    assert mlp["numerics"] == {"device": "cpu", "threads": 1}


# -- many at once ---------------------------------------------------------------------------------

def test_train_many_gives_each_jobs_result_alone():
    x, y = _toy()
    xt, yt = _toy(40, seed=1)
    spec = TrainSpec(epochs=2, batch_size=32, lr=0.05, augment="flip_crop")
    jobs = [TrainJob(spec, build_model("simplecnn", 2, (1, 8, 8), seed=s), x + 0.01 * s, y,
                     xt, yt, seed=s) for s in range(3)]
    with torch_threads(1):
        alone = [train(j.spec, copy.deepcopy(j.model), j.x, j.y, x_test=j.x_test, y_test=j.y_test,
                       seed=j.seed) for j in jobs]
    with torch_threads(2):
        together = train_many(jobs, workers=2, threads=1)
        assert torch.get_num_threads() == 2          # this thread's count is left alone
    for r, a in zip(together, alone, strict=True):
        _same_run(r, a)
    assert together[0].model is jobs[0].model        # trained in place, in the jobs' order


def test_run_concurrently_keeps_order_and_raises():
    assert run_concurrently([lambda i=i: (i, torch.get_num_threads()) for i in range(5)],
                            workers=3, threads=1) == [(i, 1) for i in range(5)]

    def boom():
        raise RuntimeError("job 1 failed")
    with pytest.raises(RuntimeError, match="job 1 failed"):
        run_concurrently([lambda: 0, boom], workers=2)
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run_concurrently([lambda: 0], workers=0)


def test_concurrency_per_device():
    assert concurrency("cpu", 2) == (2, 1) and concurrency("cpu", 1) == (1, 1)
    assert concurrency("cuda", 1) == (2, 1)
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        concurrency("cpu", 0)



def test_build_model_is_deterministic_from_concurrent_threads():
    # the global RNG is seeded and drawn under a lock: no model draws from another's seed
    alone = [build_model("resnet8", 10, (3, 8, 8), seed=s) for s in range(6)]
    together = run_concurrently([lambda s=s: build_model("resnet8", 10, (3, 8, 8), seed=s)
                                 for s in range(6)] * 3, workers=4)
    for i, m in enumerate(together):
        _assert_same_model(m, alone[i % 6])


def test_roar_retrainings_at_once_are_those_of_one_thread(tmp_path):
    # ctx.threads = 2 on CPU: the fractions' retrainings run two at a time, one thread each, so
    # they are keyed and computed as single-threaded trainings: a one-thread run of the same case
    # finds every one of them in the cache, with the same accuracies
    from suite.artifacts import TrainedModel
    from suite.data.base import Context, ImageDataset
    from suite.metrics import roar

    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 16, 16, generator=g) * 0.5
    y = torch.arange(96) % 2
    x[y == 1, :, 2:8, 2:8] += 0.5
    ds = ImageDataset("tinyroar", x[:64], y[:64], x[64:], y[64:], ("a", "b"))
    # an untrained base model and given maps: only the retrainings are under test
    base = build_model("simplecnn", 2, (1, 16, 16), seed=0).eval()
    trained = TrainedModel(base, "simplecnn", "tinyroar", 0, "true", "base-key", 0.5, 0.5, 0.0,
                           False, 0.0)
    maps = {"train": torch.rand(64, 1, 16, 16, generator=g).numpy(),
            "test": torch.rand(32, 1, 16, 16, generator=g).numpy()}
    kw = dict(fractions=(0.3, 0.5, 0.7), train_spec=TrainSpec(epochs=2, batch_size=32), maps=maps)
    one = Context(scale="smoke", cache_dir=tmp_path / "cache", seeds=(0,), threads=1)
    two = Context(scale="smoke", cache_dir=tmp_path / "cache", seeds=(0,), threads=2)
    at_once = roar.evaluate(two, ds, trained, "random", **kw)
    assert at_once.retrained == 3
    again = roar.evaluate(one, ds, trained, "random", **kw)
    assert again.retrained == 0 and again.accuracy == at_once.accuracy
    fresh = roar.evaluate(Context(scale="smoke", cache_dir=tmp_path / "fresh", seeds=(0,)), ds,
                          trained, "random", **kw)          # trained anew, one after another
    assert fresh.retrained == 3 and fresh.accuracy == at_once.accuracy

# -- CUDA (skipped without a GPU) ----------------------------------------------------------------

def _cuda_toy():
    """Class 1: a brighter top half (by 0.25 on noise in [0, 0.5)), easy to learn in a few epochs."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(768, 3, 16, 16, generator=g) * 0.5
    y = torch.arange(768) % 2
    x[y == 1, :, :8] += 0.25
    return x[:512], y[:512], x[512:], y[512:]


@cuda
def test_cuda_training_learns_and_matches_cpu_accuracy():
    x, y, xt, yt = _cuda_toy()
    spec = TrainSpec(epochs=6, batch_size=64, lr=0.05, augment="flip_crop")
    init = build_model("simplecnn", 2, (3, 16, 16), seed=0)
    cpu = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=0)
    gpu = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=0, device="cuda")
    assert next(gpu.model.parameters()).is_cuda
    # different kernels (cuDNN, TF32), so not the same bits; the same model up to training noise
    assert gpu.test_acc > 0.8 and abs(gpu.test_acc - cpu.test_acc) <= 0.06


@cuda
@pytest.mark.parametrize("precision,channels_last", [("bf16", False), ("fp32", True), ("bf16", True)])
def test_cuda_bf16_and_channels_last_within_tolerance_of_fp32(precision, channels_last):
    x, y, xt, yt = _cuda_toy()
    init = build_model("resnet8", 2, (3, 16, 16), seed=0)
    # one step from the same weights: the same update (after - before) within bf16's precision (8
    # bits of mantissa: 10 % of the largest change per tensor) or, for fp32 channels_last (other
    # cuDNN kernels, TF32 either way), within 2 %
    one = TrainSpec(epochs=1, batch_size=512, lr=0.05, schedule="constant")
    ref = train(one, copy.deepcopy(init), x, y, seed=0, device="cuda")
    fast = train(one, copy.deepcopy(init), x, y, seed=0, device="cuda", precision=precision,
                 channels_last=channels_last)
    tol = 0.1 if precision == "bf16" else 0.02
    start = init.state_dict()
    for (k, a), b in zip(ref.model.state_dict().items(), fast.model.state_dict().values()):
        if a.is_floating_point():
            d_ref, d_fast = a.cpu() - start[k], b.cpu() - start[k]
            err = float((d_fast - d_ref).abs().max())
            assert err <= tol * float(d_ref.abs().max()) + 1e-7, (k, err, float(d_ref.abs().max()))
    assert all(p.is_contiguous() for p in fast.model.parameters())   # back to NCHW after training
    # a whole training: the same accuracy within 0.06
    spec = TrainSpec(epochs=6, batch_size=64, lr=0.05, augment="flip_crop")
    a = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=0, device="cuda")
    b = train(spec, copy.deepcopy(init), x, y, x_test=xt, y_test=yt, seed=0, device="cuda",
              precision=precision, channels_last=channels_last)
    assert a.test_acc > 0.8 and abs(a.test_acc - b.test_acc) <= 0.06


@cuda
def test_cuda_steps_do_not_synchronise_with_the_host():
    x, y, _, _ = _cuda_toy()
    spec = TrainSpec(epochs=2, batch_size=32, lr=0.05, augment="flip_crop")   # 16 steps an epoch
    model = build_model("simplecnn", 2, (3, 16, 16), seed=0)
    train(TrainSpec(epochs=1), copy.deepcopy(model), x, y, device="cuda")      # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(spec, model, x, y, device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    # moving the data (2), reading each epoch's losses and logits (2 an epoch), each accuracy pass
    # (2): never per step (16 steps an epoch would make at least 32)
    assert len(syncs) <= 2 + 2 * spec.epochs + 2, [str(w.message)[:80] for w in syncs[:5]]


@cuda
def test_cuda_train_many_overlaps_on_streams_and_matches_alone():
    x, y, xt, yt = _cuda_toy()
    spec = TrainSpec(epochs=2, batch_size=64, lr=0.05)
    jobs = [TrainJob(spec, build_model("simplecnn", 2, (3, 16, 16), seed=s), x, y, xt, yt, seed=s)
            for s in range(3)]
    together = train_many(jobs, device="cuda")
    for j, r in zip(jobs, together):
        alone = train(spec, build_model("simplecnn", 2, (3, 16, 16), seed=j.seed), x, y,
                      x_test=xt, y_test=yt, seed=j.seed, device="cuda")
        assert abs(alone.test_acc - r.test_acc) <= 0.06   # cuDNN may pick other kernels per stream
