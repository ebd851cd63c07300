"""What the report writer does to the report folder besides rendering: it keeps every earlier
run's results and it deletes only pictures that it wrote itself.

``assets/`` may hold files of the user's (the folder is the user's: ``--report-dir`` can point
anywhere). The writer records the pictures it wrote in ``assets/.saliencybench-assets.json``; a
later run deletes a picture only when that manifest lists it and the new report no longer shows
it. Sub-folders and unlisted files are never touched.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

MANIFEST = ".saliencybench-assets.json"


def keep_history(out: Path) -> Path | None:
    """Copy ``out/results.json`` (if any) into ``out/../history/`` under a name never used before.

    The earlier file may be of any shape (another tool's, hand-edited, empty): its name then comes
    from its modification time. Returns the copy's path.
    """
    old = out / "results.json"
    if not old.is_file():
        return None
    try:
        data = json.loads(old.read_text())
        started = str(data["run"]["started"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        started = str(int(old.stat().st_mtime))
    hist = out.parent / "history"
    hist.mkdir(exist_ok=True)
    stem = re.sub(r"[^0-9A-Za-z]+", "-", started).strip("-") or "run"
    dest, n = hist / f"{stem}.json", 1
    while dest.exists():            # never overwrite an earlier copy
        n += 1
        dest = hist / f"{stem}-{n}.json"
    shutil.copy2(old, dest)
    return dest


def _listed(assets: Path) -> set[str]:
    try:
        data = json.loads((assets / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return set()
    files = data.get("files") if isinstance(data, dict) else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def write_assets_manifest(out: Path, results: dict) -> list[str]:
    """Delete the pictures of earlier runs (listed in the manifest) that ``results`` no longer
    shows, then record the pictures ``results`` references. Returns the deleted names."""
    assets = out / "assets"
    referenced = {Path(img["file"]).name for c in results.get("cases", [])
                  for img in (c.get("images") or []) if isinstance(img, dict)
                  and isinstance(img.get("file"), str) and img["file"].startswith("assets/")}
    deleted = []
    if assets.is_dir():
        for name in sorted(_listed(assets) - referenced):
            f = assets / name
            if "/" not in name and name != MANIFEST and f.is_file() and not f.is_symlink():
                f.unlink()
                deleted.append(name)
    if referenced:
        assets.mkdir(parents=True, exist_ok=True)
        (assets / MANIFEST).write_text(json.dumps({"files": sorted(referenced)}, indent=0))
    return deleted
