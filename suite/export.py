"""Export a method's attribution maps for a dataset split to a file, with their metadata.

``python -m suite.export --dataset digits --model simplecnn --method gradient --split test
--out maps.npz`` (``--help`` lists the options) or ``export_maps(...)`` from Python.

The model is the one the cases use: trained by the suite with the recipe of (dataset, model,
scale) and seed, read from the artifact cache when it is there (``suite.artifacts.trained_model``),
or loaded and not trained for pretrained ids (``*_in1k``) and ``--checkpoint`` files. The maps are
``suite.methods.extract_cached``'s, so they come from the cache when a case (or an earlier export)
computed them for the same model, images, method parameters and target, and go into it
otherwise: the whole split is ROAR's / KAR's entry, ``n_images=N`` of the test split the
perturbation metrics' (AOPC, insertion / deletion, pixel flipping, ROAD: their first N images). The method's parameters are its defaults at the scale (``method_params``) updated by
``--param NAME=VALUE``.

The ``.npz`` file holds ``maps`` (float32, (N, C or 1, H, W): raw, one channel per input channel
for most gradient methods; pool them with ``suite.methods.aggregate(maps, meta["aggregation"])``),
``indices`` (the images' positions in the split), ``labels`` (true classes), ``targets`` (the
classes explained: predicted or true) and ``meta``, a JSON string: dataset (id, split, scale,
fingerprint), model (id, artifact key, source, test accuracy), method (id, resolved parameters,
aggregation, target), seed, number of images and the suite's method version. An existing file is
never overwritten unless ``force``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("saliencybench")

SPLITS = ("train", "test")
FORMAT_VERSION = 1


class ExportError(ValueError):
    """A bad request (unknown name, unavailable data, existing file): the message says why."""


def _check_name(kind: str, name: str, table: dict, scale: str | None = None) -> None:
    if name not in table:
        raise ExportError(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(table))}")
    scales = getattr(table[name], "scales", None)
    if scale is not None and scales is not None and scale not in scales:
        allowed = sorted(n for n, s in table.items() if scale in s.scales)
        raise ExportError(f"{kind} {name!r} runs at scale {', '.join(scales)}, not {scale}; "
                          f"at {scale}: {', '.join(allowed)}")


def _parse_value(text: str) -> Any:
    """A --param value: JSON (numbers, true/false, null, lists, quoted strings), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve(dataset: str, model: str, method: str, scale: str) -> None:
    """Check the names and that the method applies; ExportError naming what is allowed."""
    from suite.registry import DATASETS, METHODS, MODELS
    from suite.matrix import load_builtins, method_applies, pairs
    from suite.training import recipe

    load_builtins()
    _check_name("dataset", dataset, DATASETS, scale)
    _check_name("model", model, MODELS, scale)
    _check_name("method", method, METHODS)
    mo, ds = MODELS[model], DATASETS[dataset]
    if not pairs(mo, ds, "maps"):
        ok = sorted(n for n, d in DATASETS.items() if scale in d.scales and pairs(mo, d, "maps"))
        raise ExportError(f"model {model!r} does not run on dataset {dataset!r}; its datasets: "
                          f"{', '.join(ok) or 'none'}")
    reason = method_applies(METHODS[method], mo, ds)
    if reason is not None:
        ok = sorted(n for n, me in METHODS.items() if method_applies(me, mo, ds) is None)
        raise ExportError(f"{reason}; methods for {dataset} / {model}: {', '.join(ok)}")
    from suite.checkpoints import is_given

    unsupported = None if is_given(model) else recipe(dataset, model, scale).unsupported
    if unsupported:
        raise ExportError(f"{dataset} x {model}: {unsupported}")


def export_maps(dataset: str, model: str, method: str, out: str | Path, *, split: str = "test",
                ctx=None, seed: int | None = None, params: dict[str, Any] | None = None,
                target: str = "predicted", n_images: int | None = None,
                batch_size: int = 64, force: bool = False) -> dict:
    """Write ``method``'s maps of ``dataset``'s ``split`` for ``model`` to ``out`` (.npz); return
    the metadata written. ``ctx``: a ``suite.data.Context`` (scale, device, data root, cache,
    threads; default ``Context()``: small scale, CPU); ``seed``: the model's and the method's seed
    (default the context's first); ``n_images``: the first N images of the split (default all)."""
    from suite.data import Context, DatasetUnavailable
    from suite.methods import default_aggregation, extract_cached, method_params
    from suite.methods.base import METHODS_VERSION
    from suite.methods.extract import TARGETS
    from suite.models.pretrained import WeightsError, WeightsUnavailable
    from suite.training import torch_threads

    ctx = ctx if ctx is not None else Context()
    seed = ctx.seeds[0] if seed is None else int(seed)
    out = Path(out).expanduser()
    if split not in SPLITS:
        raise ExportError(f"split {split!r}; allowed: {', '.join(SPLITS)}")
    if target not in TARGETS:
        raise ExportError(f"target {target!r}; allowed: {', '.join(TARGETS)}")
    if n_images is not None and n_images < 1:
        raise ExportError(f"n_images must be >= 1, got {n_images}")
    if out.suffix != ".npz":
        raise ExportError(f"{out}: the output is an .npz file; give a name ending in .npz")
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force (force=True) to overwrite it")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a directory")
    resolve(dataset, model, method, ctx.scale)
    full = {**method_params(method, ctx.scale), **(params or {})}
    from suite.methods.extract import resolve_params

    try:
        resolved = resolve_params(method, model, full, seed)
    except ValueError as err:
        raise ExportError(str(err)) from None

    from suite.artifacts import trained_model
    from suite.checkpoints import given_model, is_given, load_for

    try:
        ds = load_for(dataset, model, ctx)
    except (DatasetUnavailable, WeightsUnavailable) as err:
        raise ExportError(str(err)) from None
    if is_given(model):
        try:
            tm = given_model(ctx, ds, model)
        except WeightsError as err:
            raise ExportError(str(err)) from None
    else:
        tm = trained_model(ctx, ds, model, seed)
    x, y, masks = ds.split(split)
    if len(x) == 0:
        raise ExportError(f"dataset {dataset!r} has no {split} images at scale {ctx.scale}")
    n = len(x) if n_images is None else min(n_images, len(x))
    x, y = x[:n], y[:n]
    masks = masks[:n] if masks is not None else None
    # the split's label in the cache key, as the cases write it: the whole split as ROAR / KAR,
    # the first N test images as the perturbation metrics (``test{N}``), so that their maps are
    # read, not recomputed
    label = split if n_images is None else f"{split}{n}"
    with torch_threads(ctx.threads):
        maps, from_cache = extract_cached(
            ctx.cache, model_key=tm.key, model=tm.model, model_name=model, method_name=method,
            x=x, split=label, labels=y, masks=masks, target=target, batch_size=batch_size,
            device=ctx.device, seed=seed, params=full)
        if target == "label":
            targets = y.numpy()
        else:
            from suite.training import predict

            targets = predict(tm.model, x, device=ctx.device).argmax(1).numpy()
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": {"id": dataset, "split": split, "scale": ctx.scale,
                    "fingerprint": ds.fingerprint, "classes": list(ds.classes),
                    "in_shape": list(ds.in_shape)},
        "model": {"id": model, "key": tm.key, "seed": tm.seed, "given": is_given(model),
                  "test_acc": tm.test_acc, "from_cache": tm.from_cache},
        "method": {"id": method, "params": _jsonable(resolved), "target": target,
                   "aggregation": default_aggregation(method), "methods_version": METHODS_VERSION},
        "seed": seed, "n_images": n, "maps_from_cache": bool(from_cache),
        "device": str(ctx.device), "threads": ctx.threads,
    }
    _write(out, force, maps=np.ascontiguousarray(maps, dtype=np.float32),
           indices=np.arange(n, dtype=np.int64), labels=y.numpy().astype(np.int64),
           targets=np.asarray(targets, dtype=np.int64), meta=np.array(json.dumps(meta)))
    log.info("exported %d %s maps of %s/%s (%s) to %s%s", n, method, dataset, model, split, out,
             " (from the cache)" if from_cache else "")
    return meta


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


def _write(out: Path, force: bool, **arrays: np.ndarray) -> None:
    """Write atomically; without ``force`` never replace a file that appeared meanwhile."""
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp.npz", dir=out.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)      # fails if out exists: no overwrite
            except FileExistsError:
                raise ExportError(f"{out} exists; pass --force (force=True) to overwrite it") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_maps(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of an exported file."""
    with np.load(Path(path), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "meta"}
        meta = json.loads(str(f["meta"]))
    return arrays, meta


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"invalid --param {text!r}: give NAME=VALUE, e.g. n_steps=32")
    return name.strip(), _parse_value(value)


def parser() -> argparse.ArgumentParser:
    from suite.specs import SCALES

    p = argparse.ArgumentParser(
        prog="python -m suite.export",
        description="Write a method's attribution maps for a dataset split to an .npz file with "
                    "their metadata (model key, method, parameters, image indices); the model and "
                    "the maps come from the artifact cache when present.")
    p.add_argument("--dataset", required=True, help="dataset id (a wrong one lists the allowed ids)")
    p.add_argument("--model", required=True, help="model id")
    p.add_argument("--method", required=True, help="method id (python -m suite.methods lists them)")
    p.add_argument("--split", choices=SPLITS, default="test", help="default: test")
    p.add_argument("--out", required=True, type=Path, help="output file, .npz")
    p.add_argument("--scale", choices=SCALES, default="small",
                   help="the scale whose recipe trained the model and whose method parameters "
                        "apply (as pytest's --scale). Default: small")
    p.add_argument("--seed", type=int, default=0, help="model and method seed. Default: 0")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                   help="override a method parameter (repeatable; JSON values)")
    p.add_argument("--target", choices=("predicted", "label"), default="predicted",
                   help="the class explained. Default: predicted")
    p.add_argument("--n-images", type=int, default=None, help="the first N images of the split")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (part of a trained "
                   "model's cache key, as pytest's --threads). Default: 1")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--image-folder", type=Path, default=None)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--download", action="store_true")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                   help="evaluate this state dict for --model instead of training it")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers your datasets / models / methods")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import importlib

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from suite.data.base import Context, default_cache_dir, default_data_root

    try:
        from suite.matrix import load_builtins

        load_builtins()
        for mod in args.imports:
            importlib.import_module(mod)
        if args.checkpoint is not None:
            from suite import checkpoints
            from suite.registry import MODELS

            if args.model not in MODELS:
                _check_name("model", args.model, MODELS)
            checkpoints.add(args.model, args.checkpoint)
        ctx = Context(scale=args.scale, device=args.device, seeds=(args.seed,),
                      data_root=args.data_root or default_data_root(),
                      cache_dir=args.cache_dir or default_cache_dir(), download=args.download,
                      image_folder=args.image_folder, image_size=args.image_size,
                      threads=args.threads)
        meta = export_maps(args.dataset, args.model, args.method, args.out, split=args.split,
                           ctx=ctx, seed=args.seed, params=dict(args.param), target=args.target,
                           n_images=args.n_images, batch_size=args.batch_size, force=args.force)
    except (ExportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {meta['n_images']} maps of {args.method} on {args.dataset}/{args.model} "
          f"({args.split}), model key {meta['model']['key']}"
          + ("; maps from the cache" if meta["maps_from_cache"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
