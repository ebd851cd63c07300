"""Content-addressed artifacts on disk: atomic writes, file locks, checksums.

Layout: ``<root>/<kind>/<name>-<key>/`` holding ``artifact.<ext>`` and ``meta.json`` (spec, key,
schema, versions, sha256 and size of the artifact, build time). The key is the sha256 of the
canonical JSON of the spec plus ``SCHEMA`` (bump it when the meaning of an artifact changes).

``fetch`` checks, builds and writes under a ``filelock.FileLock``, so parallel pytest-xdist
workers build each artifact once. An artifact whose checksum does not match its meta is never
loaded: it is rebuilt, with a warning. Every build is appended to ``<root>/builds.log`` (one JSON
line), which is how tests count builds across processes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from filelock import FileLock

from suite.specs import spec_dict

SCHEMA = 1
log = logging.getLogger("saliencybench")
T = TypeVar("T")


class CorruptArtifactWarning(UserWarning):
    """A cached artifact failed its checksum (truncated or corrupted) and is being rebuilt."""


def canonical_json(obj: Any) -> str:
    return json.dumps(spec_dict(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec_key(spec: Any, schema: int = SCHEMA) -> str:
    payload = canonical_json({"schema": schema, "spec": spec})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file in ``path``'s folder, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one kind of artifact is written and read back."""

    ext: str
    save: Callable[[T, Path], None]
    load: Callable[[Path], T]


@dataclass(frozen=True)
class Fetched(Generic[T]):
    value: T
    from_cache: bool
    path: Path
    meta: dict
    key: str = ""                  # the artifact's key, derived from its spec


def _versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version()}
    for mod in ("torch", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover - both are dependencies
            pass
    return out


_NAME = re.compile(r"[^./\\\x00-\x1f][^/\\\x00-\x1f]*")   # no separator, no control, no leading dot


def meta_checksum(meta: dict) -> str:
    """sha256 of the canonical JSON of every field of ``meta`` except ``meta_sha256`` itself."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _distrust(folder: Path, why: str) -> None:
    warnings.warn(f"cached artifact {folder} is not trusted: {why}; rebuilding it",
                  CorruptArtifactWarning, stacklevel=3)
    return None


class ArtifactCache:
    """The artifact store under ``root``.

    ``rebuild=True`` rebuilds every artifact this run fetches, once: an artifact counts as rebuilt
    when its meta.json carries this run's ``run_id``. Give every process of one run (the pytest-xdist
    workers) the same ``run_id`` and each shared artifact is rebuilt once, not once per process.
    """

    def __init__(self, root: str | os.PathLike, *, rebuild: bool = False, run_id: str | None = None):
        self.root = Path(root).expanduser().resolve()
        self.rebuild = rebuild
        self.run_id = run_id or uuid.uuid4().hex
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, kind: str, name: str, spec: Any) -> Path:
        for what, part in (("kind", kind), ("name", name)):
            if not isinstance(part, str) or not _NAME.fullmatch(part) or ".." in part:
                raise ValueError(f"artifact {what} {part!r} is not allowed in a cache path: no "
                                 "'/' or '\\', no '..', no control character, not empty, not "
                                 "starting with a dot")
        return self.root / kind / f"{name}-{spec_key(spec)}"

    def _valid(self, folder: Path, codec: Codec, spec: Any) -> dict | None:
        """The folder's meta.json if everything in it can be trusted, else None (with a warning).

        Nothing read from disk is taken on trust: meta.json must be a JSON object whose ``key``
        is the folder's own key (derived from ``spec``, never read back), whose ``spec`` is
        ``spec``, whose own checksum (``meta_sha256``, over every other field: the figures results
        are read from, e.g. a model's accuracy in ``info``) matches, and whose artifact has the
        recorded size and sha256.
        """
        meta_path, art = folder / "meta.json", folder / f"artifact.{codec.ext}"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return _distrust(folder, "meta.json is unreadable or not JSON")
        if not isinstance(meta, dict):
            return _distrust(folder, f"meta.json holds a {type(meta).__name__}, not an object")
        key = folder.name.rsplit("-", 1)[1]
        if meta.get("key") != key:
            return _distrust(folder, f"meta.json names key {meta.get('key')!r}, the folder is {key!r}")
        if meta.get("spec") != json.loads(canonical_json(spec)):
            return _distrust(folder, "meta.json's spec is not the spec this key is made of")
        if meta.get("meta_sha256") != meta_checksum(meta):
            return _distrust(folder, "meta.json does not match its own checksum (edited or torn)")
        if not art.exists() or art.stat().st_size != meta.get("size") or file_sha256(art) != meta.get("sha256"):
            return _distrust(folder, f"the artifact {art.name} does not match its checksum "
                                     "(truncated or corrupted)")
        return meta

    def lookup(self, kind: str, name: str, spec: Any, codec: Codec) -> tuple[str, dict | None]:
        """(key, meta) of the artifact for ``spec``; meta is None when it is absent, not trusted
        or due for ``rebuild`` in this run. Reads no artifact into memory and builds nothing
        (``suite.plan``: what is cached)."""
        folder = self.folder(kind, name, spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorruptArtifactWarning)   # fetch warns when it rebuilds
            meta = self._valid(folder, codec, spec)
        if meta is not None and self.rebuild and meta.get("run") != self.run_id:
            meta = None
        return folder.name.rsplit("-", 1)[1], meta

    def fetch(self, kind: str, name: str, spec: Any, build: Callable[[], T], codec: Codec[T],
              *, info: Callable[[T], dict] | None = None) -> Fetched[T]:
        """Load the artifact for ``spec`` or build, write and return it.

        ``info(value)`` may add JSON-safe facts (e.g. accuracy) to meta.json at build time; they are
        covered by meta.json's own checksum. ``Fetched.key`` is derived from ``spec``, not read back.
        """
        folder = self.folder(kind, name, spec)
        key = folder.name.rsplit("-", 1)[1]
        art = folder / f"artifact.{codec.ext}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            _remove_stale_temps(folder)   # under the lock no write is in flight: leftovers of kills
            meta = self._valid(folder, codec, spec)
            if meta is not None and self.rebuild and meta.get("run") != self.run_id:
                meta = None
            if meta is not None:
                try:
                    value = codec.load(art)
                except Exception as err:  # noqa: BLE001 - any unreadable artifact is rebuilt
                    _distrust(folder, f"the artifact does not load ({type(err).__name__}: {err})")
                else:
                    return Fetched(value, True, art, meta, key)
            t0 = time.perf_counter()
            value = build()
            seconds = time.perf_counter() - t0
            folder.mkdir(parents=True, exist_ok=True)
            meta_path = folder / "meta.json"
            if meta_path.exists():
                meta_path.unlink()        # an artifact without meta is never trusted
            atomic_write(art, lambda p: codec.save(value, p))
            meta = {"kind": kind, "name": name, "key": key, "run": self.run_id,
                    "schema": SCHEMA, "spec": json.loads(canonical_json(spec)), "versions": _versions(),
                    "sha256": file_sha256(art), "size": art.stat().st_size,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(seconds, 3),
                    "info": info(value) if info else {}}
            meta = json.loads(json.dumps(meta))        # exactly what a later run reads back
            meta["meta_sha256"] = meta_checksum(meta)
            atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True)))
            line = json.dumps({"kind": kind, "name": name, "key": key, "pid": os.getpid(),
                               "seconds": meta["build_seconds"]})
            with open(self.root / "builds.log", "a") as f:   # O_APPEND: one small write per line
                f.write(line + "\n")
            log.info("built %s/%s in %.1fs", kind, folder.name, seconds)
            return Fetched(value, False, art, meta, key)

    def builds(self) -> list[dict]:
        """Every build recorded in this cache (across processes), oldest first.

        builds.log is a record, never an input to a result: a torn or foreign line (a killed
        write, an edit) is skipped, with a warning, and the other lines still count.
        """
        path = self.root / "builds.log"
        if not path.exists():
            return []
        out, bad = [], 0
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if isinstance(rec, dict) and {"kind", "name", "key"} <= set(rec):
                out.append(rec)
            else:
                bad += 1
        if bad:
            warnings.warn(f"{path}: skipped {bad} unreadable line(s) (a torn write?)",
                          CorruptArtifactWarning, stacklevel=2)
        return out


def _remove_stale_temps(folder: Path) -> None:
    """Delete ``.artifact.*.tmp`` / ``.meta.json.*.tmp`` files that a killed write left behind."""
    if folder.is_dir():
        for f in folder.glob(".*.tmp"):
            try:
                f.unlink()
            except OSError:  # pragma: no cover - e.g. removed concurrently
                pass


# -- codecs -----------------------------------------------------------------------------------

def _save_state(value: dict, path: Path) -> None:
    import torch
    torch.save(value, path)


def _load_state(path: Path) -> dict:
    import torch
    return torch.load(path, map_location="cpu", weights_only=True)


#: a dict of tensors / plain values (state dicts, dataset tensors); loaded with weights_only=True
TORCH = Codec("pt", _save_state, _load_state)


def _save_npz(value: dict, path: Path) -> None:
    import numpy as np
    with open(path, "wb") as f:
        np.savez(f, **value)


def _load_npz(path: Path) -> dict:
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


#: a dict of numpy arrays (attributions, masks); loaded with allow_pickle=False
NPZ = Codec("npz", _save_npz, _load_npz)

JSON = Codec("json", lambda v, p: p.write_text(json.dumps(v, sort_keys=True)),
             lambda p: json.loads(p.read_text()))
