"""Model randomization for the sanity checks (Adebayo et al. 2018): pure torch, no metric logic.

Every function here works on a ``copy.deepcopy`` of the model it is given: the trained model (and
so the cached artifact it was loaded from) is never modified.

Re-initialisation (``reinit_layer``): on a CPU model the layer itself, elsewhere a CPU copy of it,
is reset module by module with its own ``reset_parameters()`` (PyTorch's default init: Kaiming-uniform weights and
uniform biases for conv/linear, ones/zeros for norm layers) and ``reset_running_stats()`` where it
has one, with the CPU generator seeded with ``layer_seed(seed, index)`` (and restored after); a module with
parameters but no ``reset_parameters`` gets N(0, 0.01^2) draws. A copy's values are then copied
into the model's own tensors (device, dtype and ``requires_grad`` unchanged). ``index`` is the layer's
position in the model's declared order (input to output), so a layer receives the same new
weights in the cascading and the independent test and in top-down and bottom-up order: the fully
randomized model is the same whichever order reached it. The global RNG is left untouched.

Layers are the model's declared ``layer_names(model, name)`` (``suite.models``), input to output.
``cascade_order(layers, "top_down")`` is the paper's order (logits first), "bottom_up" the reverse.

Weight noise (``noisy_model``): every parameter of the chosen layers (default: all declared layers)
becomes ``w * (1 + s * eps)`` ("multiplicative", i.e. w times N(1, s^2)) or ``w + s * eps``
("additive", absolute standard deviation s), with eps ~ N(0, 1) drawn on the CPU from a generator
seeded by (seed, parameter position), so the noise pattern is the same at every level and only its
size grows.

Layer-wise weight noise (``add_layer_noise``, ``cascading_noise_models``,
``independent_noise_models``, and ``noisy_model(..., layers=[...])``): the noise of a layer is
drawn from generators seeded by ``noise_seed(seed, layer name, parameter position within the
layer)``, a function of (seed, layer) alone, so a layer receives the same noise whichever other
layers are noised, in the cascade, in the independent test and all at once: the cascade's step k
is exactly the model with the top k layers noised.
"""
from __future__ import annotations

import copy
import zlib
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

ORDERS = ("top_down", "bottom_up")
NOISE_MODES = ("multiplicative", "additive")


def layer_seed(seed: int, index: int) -> int:
    """Seed of the re-initialisation of declared layer ``index`` (input-to-output position)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    return 1_000_003 * (seed + 1) + 7919 * index


def reinit_layer(model: nn.Module, layer: str, seed: int) -> None:
    """Re-initialise every parameter and buffer of ``model.<layer>`` in place (see module doc).

    Call it on a copy: it modifies ``model``.
    """
    sub = model.get_submodule(layer)
    on_cpu = all(t.device.type == "cpu" for t in (*sub.parameters(), *sub.buffers()))
    # on the CPU the reset can run in place (the same draws as on a copy); elsewhere it runs on a
    # CPU copy whose values are then copied over, so that every device gets the same weights
    fresh = sub if on_cpu else copy.deepcopy(sub).cpu()
    # only the CPU generator is seeded and restored (fresh is on the CPU): torch.manual_seed would
    # also seed every accelerator's generator (and costs ~0.1 ms, ~0.4 ms between backward passes)
    cpu_gen = torch.default_generator
    state = cpu_gen.get_state()
    try:
        cpu_gen.manual_seed(seed)
        with torch.no_grad():
            for m in fresh.modules():
                if callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()
                else:
                    for p in m.parameters(recurse=False):
                        p.normal_(0.0, 0.01)
                if callable(getattr(m, "reset_running_stats", None)):
                    m.reset_running_stats()
    finally:
        cpu_gen.set_state(state)
    if fresh is sub:
        return
    with torch.no_grad():
        for dst, src in zip(sub.state_dict(keep_vars=True).values(), fresh.state_dict().values()):
            dst.copy_(src.to(dst.device, dst.dtype))


def cascade_order(layers: Sequence[str], order: str = "top_down") -> list[tuple[int, str]]:
    """(declared index, layer) pairs in randomization order: top_down = output layer first."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r}; allowed: {', '.join(ORDERS)}")
    pairs = list(enumerate(layers))
    return pairs[::-1] if order == "top_down" else pairs


def cascading_models(model: nn.Module, layers: Sequence[str], *, order: str = "top_down",
                     seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer, model) after re-initialising each layer in turn, cumulatively.

    The same copy is yielded every time (randomized one layer further each step): use it before
    advancing the iterator, or ``copy.deepcopy`` it.
    """
    steps = cascade_order(layers, order)
    m = copy.deepcopy(model)
    for index, name in steps:
        reinit_layer(m, name, layer_seed(seed, index))
        yield name, m


def independent_models(model: nn.Module, layers: Sequence[str], *,
                       seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer, model) with only that layer re-initialised, the rest trained (input to output)."""
    for index, name in enumerate(layers):
        m = copy.deepcopy(model)
        reinit_layer(m, name, layer_seed(seed, index))
        yield name, m


def noisy_model(model: nn.Module, s: float, *, mode: str = "multiplicative",
                layers: Sequence[str] | None = None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with Gaussian weight noise of size ``s`` on ``layers`` (see module doc).

    ``layers=None``: every parameter of the model, noise seeded by (seed, parameter position);
    with ``layers`` each layer's noise is ``add_layer_noise``'s, a function of (seed, layer) alone.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode {mode!r}; allowed: {', '.join(NOISE_MODES)}")
    if not s >= 0:
        raise ValueError(f"noise level must be >= 0, got {s}")
    m = copy.deepcopy(model)
    if layers is not None:
        for name in layers:
            add_layer_noise(m, name, s, mode=mode, seed=seed)
        return m
    params = list(m.parameters())
    with torch.no_grad():
        for i, p in enumerate(params):
            g = torch.Generator().manual_seed(layer_seed(seed, i))
            eps = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.device, p.dtype)
            if mode == "multiplicative":
                p.mul_(1.0 + s * eps)
            else:
                p.add_(s * eps)
    return m


def noise_seed(seed: int, layer: str, position: int) -> int:
    """Seed of the weight noise of parameter ``position`` (in ``parameters()`` order) of ``layer``."""
    if seed < 0 or position < 0:
        raise ValueError(f"seed and position must be >= 0, got {seed}, {position}")
    return int(np.random.SeedSequence([int(seed), 0x401E, zlib.crc32(layer.encode()),
                                       int(position)]).generate_state(1, np.uint64)[0] >> 1)


def add_layer_noise(model: nn.Module, layer: str, s: float, *, mode: str = "additive",
                    seed: int = 0) -> None:
    """In place: every parameter of ``model.<layer>`` becomes ``w + s * eps`` ("additive",
    N(0, s^2)) or ``w * (1 + s * eps)`` ("multiplicative", N(1, s^2)), eps ~ N(0, 1) drawn on the
    CPU from ``noise_seed(seed, layer, position)``. Call it on a copy."""
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode {mode!r}; allowed: {', '.join(NOISE_MODES)}")
    if not s >= 0:
        raise ValueError(f"noise level must be >= 0, got {s}")
    with torch.no_grad():
        for j, p in enumerate(model.get_submodule(layer).parameters()):
            g = torch.Generator().manual_seed(noise_seed(seed, layer, j))
            eps = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.device, p.dtype)
            if mode == "multiplicative":
                p.mul_(1.0 + s * eps)
            else:
                p.add_(s * eps)


def cascading_noise_models(model: nn.Module, layers: Sequence[str], s: float, *,
                           mode: str = "additive", order: str = "top_down",
                           seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer, model) after adding noise to each layer in turn, cumulatively (top layer
    first by default), as ``cascading_models``; the same copy is yielded every time."""
    m = copy.deepcopy(model)
    for _, name in cascade_order(layers, order):
        add_layer_noise(m, name, s, mode=mode, seed=seed)
        yield name, m


def independent_noise_models(model: nn.Module, layers: Sequence[str], s: float, *,
                             mode: str = "additive", seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer, model) with noise on that layer alone, the rest trained (input to output)."""
    for name in layers:
        m = copy.deepcopy(model)
        add_layer_noise(m, name, s, mode=mode, seed=seed)
        yield name, m


def changed_parameters(a: nn.Module, b: nn.Module) -> list[str]:
    """Names of the state-dict entries that differ between two models of the same architecture."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError("models have different state-dict keys")
    return [k for k in sa if not torch.equal(sa[k].cpu(), sb[k].cpu())]


__all__ = ["NOISE_MODES", "ORDERS", "add_layer_noise", "cascade_order", "cascading_models",
           "cascading_noise_models", "changed_parameters", "independent_models",
           "independent_noise_models", "layer_seed", "noise_seed", "noisy_model", "reinit_layer"]
