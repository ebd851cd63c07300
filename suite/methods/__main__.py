"""``python -m suite.methods``: list the registered attribution methods."""
from __future__ import annotations

import sys

from suite.registry import METHODS


def table() -> str:
    rows = [("id", "aggregation", "needs", "description", "source")]
    for name, spec in METHODS.items():
        needs = ",".join(n for n, f in (("layer", spec.needs_layer), ("mask", spec.needs_mask),
                                         (spec.role, spec.is_control)) if f) or "-"
        agg = spec.aggregation
        rows.append((name, agg, needs, spec.description, spec.source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if r is not rows[0]:
            lines.append(" " * (sum(widths) + 6) + "  source: " + r[4])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
