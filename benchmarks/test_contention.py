"""Two xdist workers on one machine: ROAD's ``road_curve`` with the cores split between them.

Before the split (issue 21), every xdist worker ran numba with as many threads as the machine has
cores, so two workers on 2 cores ran 4 OpenMP threads whose spin-waits compete. The plugin now
gives each worker ``cores // workers`` numba threads (torch's count is fixed by ``--threads``).

This group times ``road_curve`` on 100 digits test images in this process while a second process
(the other "worker") runs the same call in a loop, both with the same numba thread count:

* side "split" (role suite): ``cores // 2`` numba threads per process, the plugin's rule;
* side "unsplit" (role peer): ``cores`` numba threads per process, the old behaviour.

The ratio unsplit / split is the slow-down the split removes. Both sides must compute the same
curve (numba's kernels write disjoint slices, so the thread count changes no result).
"""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest
import torch

CORES = os.cpu_count() or 1


def _setup(n: int):
    from suite.data import load
    from suite.data.base import Context
    from suite.methods.controls import sobel_magnitude
    from suite.models import build_model

    ds = load("digits", Context(scale="small"))
    x, y = ds.x_test[:n].contiguous(), ds.y_test[:n].contiguous()
    model = build_model("simplecnn", ds.num_classes, tuple(x.shape[1:]), 0).eval()
    values = sobel_magnitude(x).sum(1).numpy().astype(np.float64)
    return model, x.numpy(), y, values


def _curve(setup):
    from suite.metrics import road

    model, x, y, values = setup
    return road.road_curve(model, x, y, values, order="morf").curve_mean()


def _competitor(threads: int, n: int, stop) -> None:
    import numba

    numba.set_num_threads(threads)
    torch.set_num_threads(1)
    setup = _setup(n)
    while not stop.is_set():
        _curve(setup)


def _with_competitor(speed, side: str, role: str, threads: int):
    import numba

    n = 100
    setup = _setup(n)
    numba.set_num_threads(threads)
    torch.set_num_threads(1)
    _curve(setup)                                  # compile before the other worker starts
    if speed.quick:
        return _curve(setup)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    other = ctx.Process(target=_competitor, args=(threads, n, stop), daemon=True)
    other.start()
    try:
        speed.info(numba_threads=threads, cores=CORES)
        return speed(lambda: _curve(setup), side=side, role=role, items=n, rounds=7)
    finally:
        stop.set()
        other.join(timeout=60)
        numba.set_num_threads(max(1, CORES))


@pytest.mark.benchmark(group="contention")
def test_contention_split(speed):
    split = _with_competitor(speed, "split", "suite", max(1, CORES // 2))
    unsplit_alone = _curve(_setup(100))
    np.testing.assert_array_equal(split, unsplit_alone)


@pytest.mark.benchmark(group="contention")
def test_contention_unsplit(speed):
    unsplit = _with_competitor(speed, "unsplit", "peer", CORES)
    assert np.all((0.0 <= unsplit) & (unsplit <= 1.0))
