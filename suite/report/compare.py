"""Compare two runs' results (matched by nodeid) and list what changed beyond the noise."""
from __future__ import annotations

import math
from typing import Any

from .records import as_score, cases_of, details

RUN_KEYS = ("scale", "device", "seeds", "versions", "git")


def _std(case: dict) -> float | None:
    s = as_score(details(case).get("score_std"))
    return abs(s) if s is not None else None


def score_tolerance(old: dict, new: dict, *, n_sigma: float = 2.0,
                    rel_tol: float = 1e-6) -> tuple[float, str]:
    """The largest |new - old| still counted as noise, and where that number came from.

    With ``details.score_std`` in either run: ``n_sigma * sqrt(std_old**2 + std_new**2)`` (a std
    missing on one side is taken equal to the other's). Otherwise ``rel_tol`` relative to the larger
    magnitude (with a 1e-12 floor), so identical results never count as a change.
    """
    so, sn = _std(old), _std(new)
    if so is not None or sn is not None:
        so = sn if so is None else so
        sn = so if sn is None else sn
        tol = n_sigma * math.sqrt(so * so + sn * sn)
        if tol > 0:
            return tol, f"{n_sigma:g}·σ"
    a, b = as_score(old.get("score")) or 0.0, as_score(new.get("score")) or 0.0
    return max(rel_tol * max(abs(a), abs(b)), 1e-12), f"rel {rel_tol:g}"


def compare_runs(old: dict, new: dict, *, n_sigma: float = 2.0, rel_tol: float = 1e-6) -> dict:
    """What changed from ``old`` to ``new`` (two results.json dicts), cases matched by nodeid.

    Returns a JSON-safe dict::

        {"same": bool,                 # no case-level change at all
         "added": [nodeid], "removed": [nodeid],
         "outcome_changes": [{"nodeid", "old", "new"}],
         "baseline_changes": [{"nodeid", "old", "new", "change": "lost" | "gained"}],
         "score_changes": [{"nodeid", "metric", "old", "new", "delta", "tolerance", "noise",
                            "better": bool | None}],
         "run_changes": [{"key", "old", "new"}],   # scale/device/seeds/versions/git; context only
         "n_common": int}

    A score change is reported when ``|delta| > tolerance`` (see ``score_tolerance``) or when a
    score appeared or vanished (``delta`` is then ``None``). ``better`` uses higher_is_better.
    Lists are sorted by nodeid.
    """
    old_by = {str(c.get("nodeid")): c for c in cases_of(old)}
    new_by = {str(c.get("nodeid")): c for c in cases_of(new)}
    common = sorted(old_by.keys() & new_by.keys())
    out: dict[str, Any] = {
        "added": sorted(new_by.keys() - old_by.keys()),
        "removed": sorted(old_by.keys() - new_by.keys()),
        "outcome_changes": [], "baseline_changes": [], "score_changes": [], "run_changes": [],
        "n_common": len(common),
    }
    for nodeid in common:
        o, n = old_by[nodeid], new_by[nodeid]
        if o.get("outcome") != n.get("outcome"):
            out["outcome_changes"].append(
                {"nodeid": nodeid, "old": o.get("outcome"), "new": n.get("outcome")})
        bo, bn = o.get("beats_baseline"), n.get("beats_baseline")
        if bo is True and bn is not True or bn is True and bo is not True:
            out["baseline_changes"].append({"nodeid": nodeid, "old": bo, "new": bn,
                                            "change": "gained" if bn is True else "lost"})
        so, sn = as_score(o.get("score")), as_score(n.get("score"))
        if so is None and sn is None:
            continue
        tol, noise = score_tolerance(o, n, n_sigma=n_sigma, rel_tol=rel_tol)
        delta = None if so is None or sn is None else sn - so
        if delta is not None and abs(delta) <= tol:
            continue
        higher = n.get("higher_is_better", o.get("higher_is_better"))
        better = None if delta is None or not isinstance(higher, bool) else (delta > 0) == higher
        out["score_changes"].append({"nodeid": nodeid, "metric": n.get("metric"), "old": so,
                                     "new": sn, "delta": delta, "tolerance": tol,
                                     "noise": noise, "better": better})
    ro, rn = old.get("run") or {}, new.get("run") or {}
    for key in RUN_KEYS:
        if key == "versions":
            vo, vn = ro.get(key) or {}, rn.get(key) or {}
            for name in sorted(vo.keys() | vn.keys()):
                if vo.get(name) != vn.get(name):
                    out["run_changes"].append(
                        {"key": f"versions.{name}", "old": vo.get(name), "new": vn.get(name)})
        elif ro.get(key) != rn.get(key):
            out["run_changes"].append({"key": key, "old": ro.get(key), "new": rn.get(key)})
    out["same"] = not any(out[k] for k in ("added", "removed", "outcome_changes",
                                          "baseline_changes", "score_changes"))
    return out


def load_results(path) -> dict:
    """An earlier run's results.json, checked for the shape the comparison reads.

    Raises ``OSError`` when it cannot be read and ``ValueError`` (naming what is wrong) when it
    is not JSON or not a results file: an object with a ``cases`` list of objects.
    """
    import json
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError("no such file (give an earlier results.json)")
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"not a JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) \
            or not all(isinstance(c, dict) for c in data["cases"]):
        raise ValueError("not a saliencybench results.json (expected an object with a 'cases' "
                         "list of case objects)")
    if not isinstance(data.get("run", {}), dict):
        raise ValueError("not a saliencybench results.json ('run' is not an object)")
    return data
