"""The case contract: a metric computes, the plugin records and asserts.

Every metric exposes ``evaluate_case(case, ...) -> CaseResult``; a case file is three lines::

    @pytest.mark.metric("aopc")
    def test_aopc(case, dataset, trained, sb_context, judge):
        judge(aopc.evaluate_case(case, dataset, trained, sb_context))

``judge`` (a fixture of ``suite.plugin``) records everything the result holds (score, direction,
baseline, verdict, curves, details, figures) and then asserts its checks in order: the first
failed check fails the case with its message, an ``AssertionError``, so a verdict of the
benchmark, never an error of the run. Nothing under ``suite/metrics/`` records or asserts.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class Check:
    """One assertion of a case: ``passed``, and the message a failure shows (what was compared,
    the numbers, the margin). ``name`` says which rule it is (``beats_random``, ``oracle``,
    ``random_curve``, ``calibration``, ``accuracy_bar``, ...)."""

    name: str
    passed: bool
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", bool(self.passed))


@dataclass(frozen=True)
class Picture:
    """A matplotlib Figure for the report, with its caption.

    ``Picture(figure, title)`` holds a drawn Figure. ``Picture.drawn(caption, fn, *args)`` holds
    the drawing instead (``fn(*args, **kwargs)`` returns the Figure) with ``key``, a fingerprint
    of the function, its arguments and the suite's code (``picture_key`` below): the
    plugin then reuses the PNG it saved for the same key (a cached re-run draws nothing) and draws
    only on a miss. Arguments it cannot fingerprint give no key: the picture is drawn every time.
    """

    figure: Any = None
    title: str = ""
    draw: Callable[[], Any] | None = field(default=None, compare=False)
    key: str | None = None

    @classmethod
    def drawn(cls, caption: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "Picture":
        return cls(None, caption, partial(fn, *args, **kwargs), picture_key(fn, args, kwargs))

    def make(self) -> Any:
        """The Figure (drawn now when the picture holds its drawing)."""
        if self.figure is not None:
            return self.figure
        if self.draw is None:
            raise ValueError(f"picture {self.title!r} holds neither a figure nor a drawing")
        return self.draw()


@dataclass(frozen=True)
class CaseResult:
    """What one case found. Every field but ``checks`` goes into results.json (through the
    plugin's ``judge``); ``skip`` (a reason) makes the case a skip after its details are recorded
    (a condition only the computation can see, e.g. a permuted-label model that did not memorise).
    """

    score: float | None = None
    higher_is_better: bool | None = None
    baseline: Mapping[str, Any] | None = None
    beats_baseline: bool | None = None
    curves: Sequence[Mapping[str, Any]] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    figures: Sequence[Picture] = ()
    checks: Sequence[Check] = ()
    skip: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "curves", tuple(self.curves))
        object.__setattr__(self, "figures", tuple(self.figures))
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "details", dict(self.details))
        for c in self.checks:
            if not isinstance(c, Check):
                raise TypeError(f"CaseResult.checks holds {type(c).__name__}, not Check")

    @property
    def failed(self) -> Check | None:
        """The first check that did not pass (the one the case fails with), or None."""
        return next((c for c in self.checks if not c.passed), None)


# -- the key of a picture drawn lazily (Picture.drawn) --------------------------------------

#: bump when the picture cache's file format changes
PICTURE_VERSION = 1
_CODE: list[str] = []


def code_fingerprint() -> str:
    """sha256 of the sources of every module of ``suite`` and ``kernels`` (once per process): a
    picture is keyed by all the code that could draw it, so any change of the suite's code
    redraws every picture (the safe side), and a re-run of the same code draws none."""
    if not _CODE:
        import matplotlib
        import PIL

        h = hashlib.sha256(f"v{PICTURE_VERSION} mpl {matplotlib.__version__} pil {PIL.__version__}"
                           .encode())
        root = Path(__file__).resolve().parents[1]
        for pkg in ("suite", "kernels"):
            for f in sorted((root / pkg).rglob("*.py")):
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
        _CODE.append(h.hexdigest())
    return _CODE[0]


class _Unkeyable(Exception):
    pass


def _feed(h, obj: Any) -> None:
    """Hash ``obj`` by value: arrays by dtype, shape and bytes; containers and dataclasses field by
    field; scalars and strings by repr. Anything else raises ``_Unkeyable``."""
    import numpy as np
    import torch

    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.Tensor):
        try:
            a = obj.detach().cpu().numpy()
        except (TypeError, RuntimeError) as err:      # e.g. bfloat16: no numpy dtype
            raise _Unkeyable(str(err)) from None
        _feed(h, a)
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        if a.dtype == object:
            raise _Unkeyable("object array")
        h.update(f"nd:{a.dtype.str}{a.shape};".encode())
        h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    elif isinstance(obj, np.generic):
        _feed(h, obj.item())
    elif isinstance(obj, dict):
        h.update(f"dict{len(obj)}(".encode())
        for k, v in obj.items():          # insertion order: the drawing order
            _feed(h, k)
            _feed(h, v)
        h.update(b")")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}{len(obj)}(".encode())
        for v in obj:
            _feed(h, v)
        h.update(b")")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dc:{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            _feed(h, f.name)
            _feed(h, getattr(obj, f.name))
        h.update(b")")
    else:
        raise _Unkeyable(type(obj).__name__)


def picture_key(fn, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The cache key of the picture ``fn(*args, **kwargs)``: the function's name, every argument
    by value and ``code_fingerprint()``; None when an argument cannot be hashed by value."""
    h = hashlib.sha256(f"{fn.__module__}.{fn.__qualname__};{code_fingerprint()};".encode())
    try:
        _feed(h, list(args))
        _feed(h, dict(sorted(kwargs.items())))
    except _Unkeyable:
        return None
    return h.hexdigest()[:32]
