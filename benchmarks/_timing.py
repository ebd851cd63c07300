"""Timing helper shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""
from __future__ import annotations

import time
from typing import Callable


def best(fn: Callable[[], object], repeats: int, *, warmup: bool = True) -> float:
    """Best wall time of ``repeats`` calls of ``fn``, after one untimed warm-up call (JIT
    compilation, allocator and cache warm-up are never timed)."""
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                     cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Best wall time of each function over ``repeats`` rounds, the functions called in turn
    within a round (after one untimed warm-up round), so that a change of machine load during
    the run hits every side alike; a ratio of two entries is a side-by-side measurement.

    ``cpu``: a dict that receives each function's best process CPU time (all threads) over the
    same rounds: the work done, which other processes' load changes much less than wall time."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            cpus[k].append(time.process_time() - c0)
    if cpu is not None:
        cpu.update({k: min(v) for k, v in cpus.items()})
    return {k: min(v) for k, v in times.items()}
