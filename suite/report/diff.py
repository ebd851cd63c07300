"""``python -m suite.report.diff A/results.json B/results.json``: are two runs' verdicts the same?

Compares every case of two results.json files by node id: outcome, score, direction, baseline,
verdict, curves and details, exactly (floats bit for bit, as JSON holds them), after leaving out
what may differ between two runs of the same code: timings and cache provenance (``VOLATILE``).
Prints one line per difference and a summary; exits 1 when anything differs, 0 otherwise. The
refactoring rule "behaviour does not change" is checked with it (README, "Add a metric").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

#: keys (at any depth of a case record) that timing or the cache's state decide, not the code
VOLATILE = frozenset({"duration_s", "seconds", "build_seconds", "from_cache", "retrained_now",
                      "retrained_now_random", "permuted_from_cache", "error", "error_phase"})
#: case fields compared (``images`` are the figures' captions and files)
FIELDS = ("outcome", "score", "higher_is_better", "baseline", "beats_baseline", "curves",
          "details", "images")


def _walk(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k in VOLATILE:
                continue
            if k not in a:
                yield f"{path}.{k}: only in B ({_short(b[k])})"
            elif k not in b:
                yield f"{path}.{k}: only in A ({_short(a[k])})"
            else:
                yield from _walk(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _walk(x, y, f"{path}[{i}]")
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and a != a and b != b):
        yield f"{path}: {_short(a)} vs {_short(b)}"


def _short(v: Any, n: int = 80) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= n else s[:n - 3] + "..."


def diff(a: dict, b: dict) -> list[str]:
    """Differences between two results.json dicts, one line each (empty: the same verdicts)."""
    ca = {c["nodeid"]: c for c in a.get("cases", [])}
    cb = {c["nodeid"]: c for c in b.get("cases", [])}
    out = [f"{n}: only in A" for n in sorted(set(ca) - set(cb))]
    out += [f"{n}: only in B" for n in sorted(set(cb) - set(ca))]
    for n in sorted(set(ca) & set(cb)):
        for f in FIELDS:
            out += [f"{n} {line}" for line in _walk(ca[n].get(f), cb[n].get(f), f)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m suite.report.diff", description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = p.parse_args(argv)
    a, b = (json.loads(f.read_text()) for f in (args.a, args.b))
    lines = diff(a, b)
    for line in lines:
        print(line)
    n = len({c["nodeid"] for c in a.get("cases", [])} | {c["nodeid"] for c in b.get("cases", [])})
    touched = len({line.split(" ")[0].rstrip(":") for line in lines})
    print(f"{n} cases compared; {touched} differ ({len(lines)} differences)")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
