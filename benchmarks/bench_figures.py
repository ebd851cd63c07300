"""Time the per-case picture saves of a default bench (``Recorder.figure`` -> ``png_bytes``) on
representative synthetic figures, counted as the default bench draws them.

    PYTHONPATH=. python benchmarks/bench_figures.py [--old]

``--old``: the figure set as drawn before issue 20's item 7 (maps 6 image rows, perturbation
snapshots with the random row, similarity plots, two cascading-grid pictures); the png_bytes is
whichever ``suite`` is on the path. Prints seconds per figure kind and the total.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from matplotlib.figure import Figure

from suite.data.shapes import generate
from suite.figures import figure_rows
from suite.methods.plot import draw_mosaic, mosaic, plot_maps
from suite.metrics.perturbation import snapshot_figure
from suite.report.plots import png_bytes

OLD = "--old" in sys.argv
rng = np.random.default_rng(0)
x = generate(6, 32, 0)[0]
noise = lambda n, c=40: {f"m{i}": rng.normal(size=(n, 1, 32, 32)) for i in range(c)}  # noqa: E731


def maps(n, c):
    return plot_maps(x[:n], noise(n, c), max_images=n)


def snap(rows):
    shots = {r: [np.clip(x[0] + rng.normal(0, 0.2 * k, x[0].shape), 0, 1) for k in range(4)]
             for r in ["gradient", "random"][:rows]}
    return snapshot_figure(shots, "region perturbation")


def road():
    return figure_rows({r: [x[0]] * 9 for r in ("MoRF linear", "MoRF fixed")},
                       [0.1 * k for k in range(1, 10)], title="ROAD")


def grid(rows, cols):
    cells = [[rng.uniform(size=(32, 32, 3)) for _ in range(cols)] for _ in range(rows)]
    return draw_mosaic(mosaic(cells), rows, cols, col_titles=[f"c{j}" for j in range(cols)],
                       cell=1.1, col_rotation=30, title="grid")


def curves():
    fig = Figure(figsize=(6, 3.2))
    for k, ax in enumerate(fig.subplots(1, 3)):
        for m in range(3):
            ax.plot(np.linspace(0, 1, 8), rng.normal(size=8).cumsum(), label=f"s{m}")
        ax.legend(fontsize=6)
    return fig


# kind -> (count in the default bench, figure maker); counts from its results.json (241 pictures)
KINDS = {
    "maps attribution (40 columns)": (13, lambda: maps(6 if OLD else 2, 40)),
    "maps by layer (5 columns)": (12, lambda: maps(6 if OLD else 2, 5)),
    "perturbation snapshots": (80, lambda: snap(2 if OLD else 1)),
    "ROAD/ROAR/KAR rows": (47, road),
    "sanity grids": (34, lambda: grid(6, 7)),
    "cascading method grids": (4 if OLD else 2, lambda: grid(10, 7)),
    "similarity plots": (54 if OLD else 0, curves),
}

total = 0.0
for name, (count, make) in KINDS.items():
    if not count:
        print(f"{name:32s} {count:3d} x  (not drawn)")
        continue
    figs = [make() for _ in range(3)]
    t = time.perf_counter()
    for f in figs:
        png_bytes(f, dpi=80, bbox_inches="tight")
    per = (time.perf_counter() - t) / len(figs)
    total += per * count
    print(f"{name:32s} {count:3d} x {per:.3f} s = {per * count:6.2f} s")
print(f"total {total:.1f} s ({'old figure set' if OLD else 'new figure set'})")
