"""Input checks shared by the public kernel wrappers (plain Python, never jitted)."""
from __future__ import annotations

import math

import numpy as np

_FLOATS = (np.float32, np.float64)


def as_array(x, name: str, *, ndim: int | tuple[int, ...], dtypes=None, allow_nan: bool = False):
    """Return ``x`` as a C-contiguous numpy array after checking ndim, dtype and NaN.

    ``dtypes`` is a tuple of allowed numpy dtypes (None: any real numeric dtype, bool excluded).
    Raises ValueError with a message naming the argument, the bad value and what is allowed.
    """
    if not isinstance(x, np.ndarray):
        if type(x).__module__.startswith("torch"):
            raise ValueError(f"{name} must be a numpy array, got a torch tensor: pass {name}.numpy()")
        x = np.asarray(x)
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in ndims:
        allowed = " or ".join(f"{d}-d" for d in ndims)
        raise ValueError(f"{name} must be {allowed}, got shape {x.shape} ({x.ndim}-d)")
    if dtypes is None:
        if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{name} must have a real numeric dtype (int or float), got {x.dtype}")
    elif x.dtype not in tuple(np.dtype(d) for d in dtypes):
        allowed = ", ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"{name} must have dtype {allowed}, got {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if not allow_nan and np.issubdtype(x.dtype, np.floating):
        bad = np.isnan(x)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} contains NaN (first at index {where}); NaN is not allowed")
    return np.ascontiguousarray(x)


def check_fraction(t, name: str = "t") -> float:
    """Check that ``t`` is a real number in [0, 1] and return it as a float."""
    try:
        tf = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number in [0, 1], got {t!r}") from None
    if math.isnan(tf) or not 0.0 <= tf <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {t!r}")
    return tf


def check_choice(value, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed!r}")
    return int(seed)


def fraction_to_count(t: float, p: int) -> int:
    """Number of inputs selected at fraction ``t`` of ``p``: ``k = floor(t * p)``.

    ``t * p`` is computed in float64; a product within 1e-9 of an integer counts as that integer,
    so representation error cannot lose one input (``0.29 * 100`` is 28.999999999999996 and
    gives 29, not 28).  Always ``0 <= k <= p``.
    """
    t = check_fraction(t)
    x = t * p
    r = round(x)
    k = r if abs(x - r) <= 1e-9 * max(1.0, abs(x)) else math.floor(x)
    return int(min(max(k, 0), p))
