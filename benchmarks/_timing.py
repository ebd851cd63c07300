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
