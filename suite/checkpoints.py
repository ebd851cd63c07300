"""Models the suite does not train: ImageNet-pretrained weights and your own checkpoints.

``--checkpoint MODEL=PATH`` (repeatable) evaluates the state dict in PATH for the registered
architecture MODEL instead of training it. The file is read with ``torch.load(weights_only=True)``
when the run starts (``validate``): a missing file, a corrupt one, or one that needs code execution
to load (a pickled model object instead of ``model.state_dict()``) is a usage error naming the file
before anything is collected; a wrong architecture (missing or unexpected keys, a shape mismatch)
is one before any case runs (``check_architectures``, once the cases' datasets are known).

``given_model(ctx, dataset, model)`` is what the ``trained`` fixture hands out for such models: the
loaded network, nothing trained. Its ``key`` holds the weights file's sha256, so attributions and
curves are cached per weights. ``test_acc`` is measured; the bar (``min_test_acc``) is the recipe's
for a checkpoint, and for published ImageNet weights (see ``accuracy_bar``) torchvision's
``meta["_metrics"]["ImageNet-1K"]["acc@1"]`` on the ImageNet validation set, a stated margin below
it on Imagenette / Imagewoof.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import pickle
from pathlib import Path

import torch
from torch import nn

from suite.cache import file_sha256

log = logging.getLogger("saliencybench")

#: model id -> (path, sha256, state dict), filled by ``validate`` at the start of a run
CHECKPOINTS: dict[str, tuple[Path, str, dict]] = {}

#: stated bars on the 10-class subsets, below the weights' ImageNet top-1: Imagenette's classes are
#: distinct everyday objects (expected above the ImageNet average), Imagewoof's fine-grained dog
#: breeds (expected below it). Not measured here (no weights on these machines).
SUBSET_MARGIN = {"imagenette": 0.05, "imagewoof": 0.15, "imagenet_val": 0.01}


def parse_option(value: str) -> tuple[str, Path]:
    """``MODEL=PATH`` -> (model id, path) (an argparse type)."""
    model, sep, path = value.partition("=")
    if not sep or not model or not path:
        raise argparse.ArgumentTypeError(
            f"invalid --checkpoint {value!r}: give MODEL=PATH, e.g. simplecnn=my_model.pt")
    return model.strip(), Path(path).expanduser()


def _torch_container(path: Path) -> bool:
    """Whether ``path`` is a torch.save zip archive or a legacy (protocol 2+) pickle."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80 and head[1] >= 2)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (weights_only); ValueError naming the file and what is wrong."""
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not _torch_container(path):   # text, an image, ...: torch fell back to bare pickle
            raise ValueError(f"checkpoint {path}: corrupt or not a torch file (neither the zip "
                             "archive torch.save writes nor a legacy pickle)") from None
        raise ValueError(
            f"checkpoint {path}: needs code execution to load (weights_only=True refuses it: "
            f"{str(err).splitlines()[0][:200]}); save model.state_dict() instead of the model "
            "object") from None
    except Exception as err:   # noqa: BLE001  (zip, EOF, magic-number errors of a damaged file)
        raise ValueError(f"checkpoint {path}: corrupt or not a torch file "
                         f"({type(err).__name__}: {str(err)[:200]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"checkpoint {path}: holds {type(obj).__name__}, not a state dict "
                         "(a dict of parameter name -> tensor); save model.state_dict()")
    return obj


#: model id -> path given by ``register_model(..., checkpoint=PATH)``: kept across ``validate``
REGISTERED: dict[str, Path] = {}


def add(model: str, path: str | Path, *, option: str = "--checkpoint") -> None:
    """Read ``path`` now and evaluate it for ``model`` (which must be registered) from here on."""
    from suite.registry import MODELS

    path = Path(path).expanduser()
    if model not in MODELS:
        raise ValueError(f"{option} {model}={path}: model {model!r} is not registered; "
                         f"known: {', '.join(sorted(MODELS))}")
    state = read_state_dict(path)
    CHECKPOINTS[model] = (path, file_sha256(path), state)


def register(model: str, path: str | Path | None) -> None:
    """``register_model(..., checkpoint=PATH)``: the file is read at once (an error names it at
    registration, i.e. before collection); None drops an earlier registration of ``model``."""
    if path is None:
        if REGISTERED.pop(model, None) is not None:
            CHECKPOINTS.pop(model, None)
        return
    add(model, path, option="register_model(checkpoint=...):")
    REGISTERED[model] = Path(path).expanduser()


def validate(pairs: list[tuple[str, Path]] | None) -> None:
    """Read every ``--checkpoint`` file now (pytest_configure); ValueError on the first bad one.
    Checkpoints given to ``register_model`` stay, unless the command line names the same model
    (the command line wins)."""
    from suite.matrix import load_builtins

    load_builtins()
    for model in list(CHECKPOINTS):
        if model not in REGISTERED:
            del CHECKPOINTS[model]
    given: set[str] = set()
    for model, path in pairs or ():
        if model in given:
            raise ValueError(f"--checkpoint given twice for {model}")
        given.add(model)
        add(model, path)


def load_into(model: nn.Module, state: dict, path: Path) -> None:
    """``load_state_dict`` (strict), ValueError naming the file, the missing / unexpected keys and
    the shape mismatches. A bare torchvision state dict goes into a pretrained wrapper's ``net``."""
    from suite.models.pretrained import Normalized

    target = model.net if isinstance(model, Normalized) and not any(
        k.startswith("net.") for k in state) else model
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def few(xs):
            return ", ".join(xs[:4]) + (f" and {len(xs) - 4} more" if len(xs) > 4 else "")
        parts = [f"missing keys {few(missing)}" if missing else "",
                 f"unexpected keys {few(unexpected)}" if unexpected else "",
                 f"shape mismatch {few(shapes)}" if shapes else ""]
        raise ValueError(f"checkpoint {path} does not fit the architecture: "
                         + "; ".join(p for p in parts if p))
    target.load_state_dict(state)


def check_architectures(items, ctx) -> None:
    """Before any case runs: every (dataset, model) among the collected cases whose model has a
    checkpoint builds the architecture and loads the file; ValueError on a misfit."""
    from suite.data import DatasetUnavailable, load
    from suite.models import build_model

    seen = set()
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if case is None or case.model not in CHECKPOINTS or (case.dataset, case.model) in seen:
            continue
        seen.add((case.dataset, case.model))
        path, _, state = CHECKPOINTS[case.model]
        try:
            ds = load_for(case.dataset, case.model, ctx)
        except DatasetUnavailable:
            continue   # the case is skipped anyway
        model = build_model(case.model, ds.num_classes, ds.in_shape, seed=0)
        try:
            load_into(model, state, path)
        except ValueError as err:
            raise ValueError(f"--checkpoint {case.model}={path} on {case.dataset}: {err}") from None


def is_given(model: str) -> bool:
    from suite.models.pretrained import PRETRAINED

    return model in CHECKPOINTS or model in PRETRAINED


def load_for(dataset: str, model: str, ctx):
    """The dataset as ``model`` sees it: a pretrained model gets the ImageNet-labelled view with
    its weights' resize / crop (weights checked first: no decoding when they are absent)."""
    from suite.data import load
    from suite.models import pretrained as P

    if model not in P.PRETRAINED:
        return load(dataset, ctx)
    from suite.data.imagenet import view

    if model not in CHECKPOINTS and not P.weights_file(P.PRETRAINED[model]).is_file() \
            and not ctx.download:
        P.load(model, download=False)   # raises WeightsUnavailable with the one-line reason
    resize, crop, _, _ = P.transforms_of(P.PRETRAINED[model])
    return view(dataset, ctx, resize, crop)


def accuracy_bar(model: str, dataset: str, n: int) -> float:
    """The published top-1 on ImageNet val (``meta["_metrics"]``), minus the dataset's margin and
    three binomial standard errors of an ``n``-image estimate."""
    from suite.models.pretrained import PRETRAINED

    p = PRETRAINED[model].enum().meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100.0
    se = math.sqrt(p * (1 - p) / max(n, 1))
    return max(0.0, p - SUBSET_MARGIN.get(dataset, 0.05) - 3 * se)


def given_model(ctx, ds, model_name: str):
    """A ``TrainedModel`` of the loaded (not trained) network ``model_name`` for dataset ``ds``."""
    from suite.artifacts import TrainedModel
    from suite.models import pretrained as P
    from suite.training import evaluate, recipe

    if model_name in CHECKPOINTS:
        path, digest, state = CHECKPOINTS[model_name]
        model = _memo(("ckpt", model_name, digest, ds.num_classes, ds.in_shape, str(ctx.device)),
                      lambda: _checkpoint_model(model_name, ds, state, path, ctx.device))
        source = str(path)
    else:
        model, digest = P.load(model_name, device=ctx.device, download=ctx.download)
        source = str(P.weights_file(P.PRETRAINED[model_name]))
    arch = hashlib.sha256(repr(model).encode()).hexdigest()[:16]
    key = hashlib.sha256(json.dumps({"model": model_name, "weights_sha256": digest, "arch": arch},
                                    sort_keys=True).encode()).hexdigest()[:16]
    test_acc = evaluate(model, ds.x_test, ds.y_test, device=ctx.device, batch_size=64)
    train_acc = evaluate(model, ds.x_train, ds.y_train, device=ctx.device, batch_size=64) \
        if len(ds.x_train) else float("nan")
    if model_name in P.PRETRAINED and model_name not in CHECKPOINTS:
        bar = accuracy_bar(model_name, ds.name, len(ds.y_test))
    else:
        bar = recipe(ds.name, model_name, ctx.scale).min_test_acc
    log.info("given %s (%s, sha256 %s): test acc %.3f on %d images", model_name, source,
             digest[:12], test_acc, len(ds.y_test))
    return TrainedModel(model, model_name, ds.name, 0, "true", key, train_acc, test_acc, bar,
                        True, 0.0)


_MODELS: dict[tuple, nn.Module] = {}


def _memo(key: tuple, make):
    if key not in _MODELS:
        _MODELS[key] = make()
    return _MODELS[key]


def _checkpoint_model(model_name, ds, state, path, device) -> nn.Module:
    from suite.models import build_model

    model = build_model(model_name, ds.num_classes, ds.in_shape, seed=0)
    load_into(model, state, path)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
