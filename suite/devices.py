"""``--device``: which torch device each process uses.

One device for every process (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or one per pytest-xdist
worker: ``--device cuda`` under ``-n N`` puts worker ``gw<i>`` on ``cuda:(i mod G)`` for the G
visible GPUs, and a list (``--device cuda:0,cuda:1``) puts it on the list's ``i mod len``-th entry.
Several workers may share one GPU (``-n 4`` on 2 GPUs: two each). Without xdist, ``cuda`` stays
``cuda`` (torch's current device) and a list means its first entry.

``worker_device`` is a pure function of the option, the worker index and the number of visible
GPUs, so the mapping is tested without a GPU. A trained model's cache key holds the device type,
not the index (``suite.training.numerics``): models built on cuda:1 are found by a run on cuda:0.
"""
from __future__ import annotations

import re

_ONE = r"cpu|cuda(?::\d+)?|mps|auto"
_LIST = re.compile(r"cuda:\d+(?:,cuda:\d+)+")


def parse(value: str) -> str:
    """The option as given, checked: one device, or a comma-separated list of ``cuda:N``."""
    v = (value or "").strip()
    if re.fullmatch(_ONE, v) or _LIST.fullmatch(v):
        return v
    raise ValueError(f"invalid --device {value!r}: choose cpu, cuda, cuda:N, mps, auto, or a list "
                     "of CUDA devices such as cuda:0,cuda:1 (one per xdist worker, round robin)")


def listed(value: str) -> list[str]:
    """The devices an option names (a list's entries, or the one device)."""
    return value.split(",")


def worker_index(worker_id: str | None) -> int | None:
    """``gw3`` -> 3; None (no xdist, or the controller) -> None."""
    if not worker_id:
        return None
    m = re.fullmatch(r"gw(\d+)", worker_id)
    if m is None:
        raise ValueError(f"unexpected xdist worker id {worker_id!r} (expected gw<N>)")
    return int(m.group(1))


def worker_device(option: str, worker: int | None, visible_gpus: int) -> str:
    """The device of xdist worker ``worker`` (None: not an xdist worker) for ``--device option``
    with ``visible_gpus`` CUDA devices visible (``torch.cuda.device_count()``).

    >>> [worker_device("cuda", i, 2) for i in range(4)]
    ['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1']
    """
    option = parse(option)
    if worker is not None and worker < 0:
        raise ValueError(f"worker index must be >= 0, got {worker}")
    devices = listed(option)
    if len(devices) > 1:
        for d in devices:
            if int(d.split(":")[1]) >= visible_gpus:
                raise ValueError(f"--device {option}: {d} is not visible here ({visible_gpus} CUDA "
                                 f"device(s){'' if not visible_gpus else f': cuda:0..cuda:{visible_gpus - 1}'})")
        return devices[(worker or 0) % len(devices)]
    if option == "cuda":
        if visible_gpus < 1:
            raise ValueError("--device cuda: no CUDA device is visible here; use --device cpu")
        return "cuda" if worker is None else f"cuda:{worker % visible_gpus}"
    return option
