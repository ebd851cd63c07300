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
import tempfile
import time
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


def _versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version()}
    for mod in ("torch", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover - both are dependencies
            pass
    return out


class ArtifactCache:
    def __init__(self, root: str | os.PathLike, *, rebuild: bool = False):
        self.root = Path(root).expanduser().resolve()
        self.rebuild = rebuild
        self.root.mkdir(parents=True, exist_ok=True)
        self._rebuilt: set[Path] = set()   # with rebuild=True, rebuild each artifact once per run

    def folder(self, kind: str, name: str, spec: Any) -> Path:
        return self.root / kind / f"{name}-{spec_key(spec)}"

    def _valid(self, folder: Path, codec: Codec) -> dict | None:
        meta_path, art = folder / "meta.json", folder / f"artifact.{codec.ext}"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            warnings.warn(f"unreadable meta.json in {folder}; rebuilding", CorruptArtifactWarning)
            return None
        if not art.exists() or art.stat().st_size != meta.get("size") or file_sha256(art) != meta.get("sha256"):
            warnings.warn(f"cached artifact {art} does not match its checksum (truncated or "
                          "corrupted); rebuilding it", CorruptArtifactWarning)
            return None
        return meta

    def fetch(self, kind: str, name: str, spec: Any, build: Callable[[], T], codec: Codec[T],
              *, info: Callable[[T], dict] | None = None) -> Fetched[T]:
        """Load the artifact for ``spec`` or build, write and return it.

        ``info(value)`` may add JSON-safe facts (e.g. accuracy) to meta.json at build time.
        """
        folder = self.folder(kind, name, spec)
        art = folder / f"artifact.{codec.ext}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            force = self.rebuild and folder not in self._rebuilt
            meta = None if force else self._valid(folder, codec)
            if meta is not None:
                return Fetched(codec.load(art), True, art, meta)
            t0 = time.perf_counter()
            value = build()
            seconds = time.perf_counter() - t0
            folder.mkdir(parents=True, exist_ok=True)
            meta_path = folder / "meta.json"
            if meta_path.exists():
                meta_path.unlink()        # an artifact without meta is never trusted
            atomic_write(art, lambda p: codec.save(value, p))
            meta = {"kind": kind, "name": name, "key": folder.name.rsplit("-", 1)[1],
                    "schema": SCHEMA, "spec": spec_dict(spec), "versions": _versions(),
                    "sha256": file_sha256(art), "size": art.stat().st_size,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(seconds, 3),
                    "info": info(value) if info else {}}
            atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True)))
            self._rebuilt.add(folder)
            line = json.dumps({"kind": kind, "name": name, "key": meta["key"], "pid": os.getpid(),
                               "seconds": meta["build_seconds"]})
            with open(self.root / "builds.log", "a") as f:   # O_APPEND: one small write per line
                f.write(line + "\n")
            log.info("built %s/%s in %.1fs", kind, folder.name, seconds)
            return Fetched(value, False, art, meta)

    def builds(self) -> list[dict]:
        """Every build recorded in this cache (across processes), oldest first."""
        path = self.root / "builds.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
