"""Protocol settings: every number a case's protocol uses, declared once, set from the command line.

``pytest cases/ --set aopc.n_images=1000 --set roar.fractions=0.1,0.5,0.9 --set intgrad.n_steps=32
--set gradcam.layer.resnet8=layer3.0`` (repeatable). ``python -m suite.metrics`` lists every key
with its default per scale.

Each ``Setting`` reads its default from, and writes an override into, the table the computation
already reads, for the run's scale: a perturbation metric's ``PARAMS``, ``roar.FRACTIONS``
(ROAR and KAR), ``road.FRACTIONS``, ``training.RETRAIN_EPOCHS``, the sanity checks'
``N_IMAGES``, a method's per-scale parameters (``MethodSpec.scale_params``, what
``method_params`` returns) and a model's Grad-CAM layer (``ModelSpec.gradcam_layer``). So an
override reaches every reader, in every process (each xdist worker parses the same options in
``pytest_configure``), and enters every cache key those tables already feed: the curves' key
(the metric's resolved params), the attribution key (the method's params and layer), the
retraining key (fraction, recipe). ``apply`` parses everything before it writes anything and
returns the undo (the plugin calls it in ``pytest_unconfigure``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from suite.specs import SCALES


class SettingError(ValueError):
    """An unknown key or a value a setting does not allow (the message names what is allowed)."""


@dataclass(frozen=True)
class Setting:
    key: str
    doc: str
    allowed: str                                  # what VALUE may be, in words
    parse: Callable[[str], Any] = dataclasses.field(repr=False)   # raises ValueError
    read: Callable[[str], Any] = dataclasses.field(repr=False)    # scale -> value in force
    write: Callable[[str, Any], None] = dataclasses.field(repr=False)
    group: str = ""                               # the metric, method or model it belongs to
    #: scale -> a function that puts back exactly what ``write`` will change (default: write the
    #: value ``read`` gives now)
    save: Callable[[str], Callable[[], None]] | None = dataclasses.field(default=None, repr=False)

    def snapshot(self, scale: str) -> Callable[[], None]:
        if self.save is not None:
            return self.save(scale)
        old = self.read(scale)
        return lambda: self.write(scale, old)


# -- parsers ----------------------------------------------------------------------------------

def _int(lo: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if v < lo:
            raise ValueError(f"{v} < {lo}")
        return v
    return parse


def _float(lo: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(v) or (lo is not None and v < lo):
            raise ValueError(f"{v} is not a finite number >= {lo}" if lo is not None else
                             f"{v} is not finite")
        return v
    return parse


def _choice(values: Iterable[str]) -> Callable[[str], str]:
    values = tuple(values)

    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"{text!r} is not one of {', '.join(values)}")
        return text
    return parse


def _none_or(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda text: None if text.lower() == "none" else inner(text)


def parse_fractions(text: str) -> tuple[float, ...]:
    """``0.1,0.5,0.9`` -> (0.1, 0.5, 0.9): distinct, increasing, each in (0, 1)."""
    try:
        out = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from None
    if not out or any(not 0.0 < t < 1.0 for t in out) or list(out) != sorted(set(out)):
        raise ValueError(f"{text!r}: fractions must be distinct, increasing and in (0, 1)")
    return out


# -- the table --------------------------------------------------------------------------------

def _dict_setting(key: str, table: dict, field: str, doc: str, allowed: str,
                  parse: Callable[[str], Any], group: str, default: Any = None) -> Setting:
    """A field of a per-scale dict table, e.g. ``aopc.PARAMS[scale]["n_images"]``."""
    def write(scale: str, value: Any) -> None:
        table[scale][field] = value
    return Setting(key, doc, allowed, parse, lambda s: table[s].get(field, default), write, group)


def _scale_setting(key: str, table: dict, doc: str, allowed: str, parse, group: str) -> Setting:
    """A per-scale value, e.g. ``roar.FRACTIONS[scale]``."""
    def write(scale: str, value: Any) -> None:
        table[scale] = value
    return Setting(key, doc, allowed, parse, lambda s: table[s], write, group)


_PERTURBATION_DOCS = {
    "n_images": ("test images the curves are computed on (the first N)", "an integer >= 1", _int()),
    "n_steps": ("perturbation steps of the curve", "an integer >= 1", _int()),
    "r": ("side of the square region (patch) perturbed per step, in pixels", "an integer >= 1",
          _int()),
    "score": ("the class score the curve follows", "logit or prob", _choice(("logit", "prob"))),
    "fill": ("what perturbed regions are replaced by", "uniform, constant or blur",
             _choice(("uniform", "constant", "blur"))),
    "blur_sigma": ("sigma of the insertion start image's blur (none: from the image side)",
                   "none or a number >= 0", _none_or(_float(0.0))),
}
#: per perturbation metric, its settable fields (``r`` where the metric reads one: None in the
#: table means the metric's own default, region_size(image side))
_PERTURBATION_FIELDS = {"aopc": ("n_images", "n_steps", "r", "score", "fill"),
                        "insdel": ("n_images", "n_steps", "score", "blur_sigma"),
                        "pixelflip": ("n_images", "n_steps", "r", "score", "fill"),
                        "selectivity": ("n_images", "n_steps", "r", "score")}


def _save_entry(registry: dict, name: str) -> Callable[[str], Callable[[], None]]:
    """A registry entry's undo: the spec object itself is put back."""
    def save(scale: str) -> Callable[[], None]:
        spec = registry[name]
        return lambda: registry.__setitem__(name, spec)
    return save


def _method_settings() -> list[Setting]:
    """``<method>.<param>`` for every numeric parameter a registered method has at some scale."""
    from suite.registry import METHODS

    out = []
    for name, spec in sorted(METHODS.items()):
        params: dict[str, Any] = {}
        for scale in SCALES:
            params.update(spec.params_at(scale))
        for p, v in sorted(params.items()):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or p in ("seed", "max_images"):
                continue
            is_int = isinstance(v, int)
            parse = _int(1 if p.startswith(("n_", "max_")) else 0) if is_int else _float()
            allowed = "an integer >= 1" if is_int and p.startswith(("n_", "max_")) else (
                "an integer >= 0" if is_int else "a number")

            def read(scale: str, name=name, p=p):
                return METHODS[name].params_at(scale).get(p)

            def write(scale: str, value: Any, name=name, p=p) -> None:
                spec = METHODS[name]
                table = {s: dict(v) for s, v in spec.scale_params}
                table.setdefault(scale, {})[p] = value
                METHODS[name] = dataclasses.replace(spec, scale_params=tuple(sorted(
                    (s, tuple(sorted(v.items()))) for s, v in table.items())))
            out.append(Setting(f"{name}.{p}", f"method {name}: parameter {p}", allowed, parse,
                               read, write, name, _save_entry(METHODS, name)))
    return out


def model_layers(model: str) -> list[str]:
    """The dotted names of ``model``'s modules (what ``gradcam.layer.<model>`` may be)."""
    from suite.models import build_model
    from suite.registry import MODELS

    side = max(32, MODELS[model].min_size)
    net = build_model(model, 10, (3, side, side), 0)
    return [n for n, _ in net.named_modules() if n]


def _layer_settings() -> list[Setting]:
    from suite.registry import MODELS

    out = []
    for name, spec in sorted(MODELS.items()):
        if spec.gradcam_layer is None:
            continue

        def parse(text: str, name=name) -> str:
            layers = model_layers(name)
            if text not in layers:
                shown = ", ".join(layers[:40]) + (" ..." if len(layers) > 40 else "")
                raise ValueError(f"{name} has no module {text!r}; its modules: {shown}")
            return text

        def write(scale: str, value: str, name=name) -> None:
            MODELS[name] = dataclasses.replace(MODELS[name], gradcam_layer=value)
        out.append(Setting(f"gradcam.layer.{name}", f"model {name}: the layer Grad-CAM (and "
                           "guided Grad-CAM, the CAM ensembles) read", f"a module of {name}",
                           parse, lambda s, name=name: MODELS[name].gradcam_layer, write, name,
                           _save_entry(MODELS, name)))
    return out


#: settings registered by users for their own metrics (``register``), by key
USER_SETTINGS: dict[str, Setting] = {}


def register(key: str, params: dict, field: str, *, doc: str, parse: Callable[[str], Any],
             allowed: str) -> Setting:
    """Make ``params[scale][field]`` (a user metric's per-scale table, as the built-in metrics'
    ``PARAMS``) settable as ``--set key=VALUE``; ``parse`` raises ValueError on a bad value."""
    s = _dict_setting(key, params, field, doc, allowed, parse, key.split(".")[0])
    USER_SETTINGS[key] = s
    return s


def table() -> dict[str, Setting]:
    """Every setting, by key (built from the registry: call after ``load_builtins``)."""
    import importlib

    from suite import training
    from suite.metrics import road, roar
    from suite.metrics.sanity import spec as sanity

    out: list[Setting] = []
    for metric, fields in _PERTURBATION_FIELDS.items():
        params = importlib.import_module(f"suite.metrics.{metric}").PARAMS
        for f in fields:
            doc, allowed, parse = _PERTURBATION_DOCS[f]
            if f == "r" and params["small"].get("r") is None:
                allowed, parse = "none (from the image side) or an integer >= 1", _none_or(_int())
            out.append(_dict_setting(f"{metric}.{f}", params, f, doc, allowed, parse, metric))
    out.append(_scale_setting("roar.fractions", roar.FRACTIONS, "ROAR and KAR: fractions t of "
                              "the inputs removed (kept)", "comma-separated, increasing, in (0, 1)",
                              parse_fractions, "roar"))
    epochs = training.RETRAIN_EPOCHS

    def write_epochs(scale: str, value: Any) -> None:   # an int: every dataset; a dict: restore
        epochs[scale] = dict(value) if isinstance(value, dict) else {"*": value}
    out.append(Setting("roar.epochs", "ROAR, KAR and ROAD's retrain variant: epochs of every "
                       "retraining, every dataset (none: the base recipe's)", "an integer >= 1",
                       _int(), lambda s: dict(epochs[s]), write_epochs, "roar"))
    out.append(_scale_setting("road.fractions", road.FRACTIONS, "ROAD: fractions t of the pixels "
                              "imputed", "comma-separated, increasing, in (0, 1)", parse_fractions,
                              "road"))
    out.append(_scale_setting("sanity.n_images", sanity.N_IMAGES, "every sanity check: test images "
                              "per case (the first N)", "an integer >= 1", _int(), "sanity"))
    out += _method_settings()
    out += _layer_settings()
    out += list(USER_SETTINGS.values())
    keys: dict[str, Setting] = {}
    for s in out:
        if s.key in keys:
            raise RuntimeError(f"setting key {s.key!r} declared twice")
        keys[s.key] = s
    return keys


# -- applying ---------------------------------------------------------------------------------

def parse(assignments: Iterable[str]) -> dict[str, Any]:
    """``["aopc.n_images=8", ...]`` -> {key: parsed value}; ``SettingError`` naming the allowed
    keys (an unknown key) or values (a bad value). The last of repeated keys wins."""
    from suite.matrix import load_builtins

    load_builtins()
    known = table()
    out: dict[str, Any] = {}
    for a in assignments:
        key, eq, text = a.partition("=")
        key, text = key.strip(), text.strip()
        if not eq or not key:
            raise SettingError(f"--set {a!r}: expected KEY=VALUE, e.g. --set aopc.n_images=256")
        if key not in known:
            near = sorted(k for k in known if k.split(".")[0] == key.split(".")[0])
            raise SettingError(
                f"--set {a!r}: unknown key {key!r}. "
                + (f"Keys of {key.split('.')[0]}: {', '.join(near)}. " if near else "")
                + f"Allowed keys: {', '.join(sorted(known))} (python -m suite.metrics lists them "
                  "with their defaults)")
        try:
            out[key] = known[key].parse(text)
        except ValueError as err:
            raise SettingError(f"--set {a!r}: bad value for {key} ({err}); allowed: "
                               f"{known[key].allowed}") from None
    return out


def apply(values: dict[str, Any], scale: str) -> Callable[[], None]:
    """Write parsed ``values`` into their tables at ``scale``; returns the undo."""
    known = table()
    undo = []
    for key, value in values.items():
        undo.append(known[key].snapshot(scale))
        known[key].write(scale, value)

    def restore() -> None:
        for put_back in reversed(undo):
            put_back()
    return restore


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """The run's settings for results.json (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(values.items())}


def describe(groups: Iterable[str] | None = None) -> str:
    """One line per setting: key, default per scale, allowed values, doc."""
    from suite.matrix import load_builtins

    load_builtins()
    lines = []
    for key, s in table().items():
        if groups is not None and s.group not in groups:
            continue
        defaults = "/".join(_show(s.read(sc)) for sc in SCALES)
        lines.append(f"  {key} = {defaults}  ({s.allowed}) {s.doc}")
    return "\n".join(lines)


def _show(v: Any) -> str:
    if isinstance(v, dict):     # roar.epochs: {"*": 4, "shapes": 6}
        rest = [f"{k} {_show(n)}" for k, n in v.items() if k != "*"]
        return _show(v.get("*")) + (f" ({', '.join(rest)})" if rest else "")
    if isinstance(v, (tuple, list)):
        return ",".join(f"{t:g}" for t in v)
    return "none" if v is None else str(v)
