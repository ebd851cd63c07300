"""``python -m suite.metrics``: list the registered metrics and their cases per scale."""
from __future__ import annotations

import sys
import textwrap

from suite.registry import METRICS

from suite.matrix import cases_for, load_builtins
from suite.specs import SCALES


def table() -> str:
    load_builtins()
    head = ("id", "cases " + "/".join(SCALES), "direction")
    rows = [head]
    for name, spec in METRICS.items():
        counts = "/".join(str(len(cases_for(name, s))) for s in SCALES)
        way = "higher" if spec.higher_is_better else "lower"
        rows.append((name, counts, way if spec.needs_method else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)) + "  description"]
    for r, spec in zip(rows[1:], METRICS.values()):
        text = textwrap.wrap(spec.description, 120 - sum(widths) - 8) or [""]
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + text[0])
        lines += [" " * (sum(widths) + 6) + t for t in text[1:]]
    lines.append("cases: the (dataset, model[, method]) cases at each scale with every dataset "
                 "present (absent datasets are skipped at run time); select with pytest -k <id>")
    from suite.settings import describe

    lines.append("")
    lines.append("settings (pytest --set KEY=VALUE; default " + "/".join(SCALES) + "):")
    lines.append(describe())
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
