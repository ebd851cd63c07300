"""The sanity checks' pictures: the randomization grid of one method, Adebayo et al.'s Fig. 2
(rows methods), and the similarity curves."""
from __future__ import annotations

import math

import numpy as np
import torch

from suite.metrics.sanity.randomize import SanityResult
from suite.metrics.sanity.similarity import SIMILARITIES
from suite.metrics.sanity.verdict import SanityVerdict

def plot_grid(images: torch.Tensor, result: SanityResult, *, cell: float = 1.1):
    """Rows: example images; columns: the input, "trained", then each randomized step (|map|,
    normalised, inferno on [0, 1]); one mosaic image (``suite.methods.plot``)."""
    from suite.methods.plot import colorize, draw_mosaic, image_rgb, mosaic

    ex = result.examples
    n_steps, n = ex.shape[:2]
    imgs = images[:n].detach().cpu().numpy()
    cells = [[image_rgb(imgs[i])] + [colorize(np.abs(ex[k, i]), "inferno", 0.0, 1.0)
                                     for k in range(n_steps)] for i in range(n)]
    titles = ["input"] + [t.split(".")[-1] for t in result.steps]
    return draw_mosaic(mosaic(cells), n, n_steps + 1, col_titles=titles, cell=cell,
                       col_rotation=30, title=f"{result.method}: {result.test} randomization "
                       "(|map|, normalised)")


def plot_method_grid(image: torch.Tensor, results: dict[str, SanityResult], index: int = 0, *,
                     cell: float = 0.9):
    """Adebayo et al.'s Fig. 2 layout for one test image: rows the methods, columns the input,
    "trained", then each randomized step; ``results[m].examples[:, index]`` are the maps (|map|,
    normalised, inferno on [0, 1]); one mosaic image (``suite.methods.plot``)."""
    from suite.methods.plot import colorize, draw_mosaic, image_rgb, mosaic

    if not results:
        raise ValueError("plot_method_grid needs at least one method's result")
    steps = next(iter(results.values())).steps
    if any(r.steps != steps for r in results.values()):
        raise ValueError("plot_method_grid: the results have different steps "
                         f"({ {m: r.steps for m, r in results.items()} })")
    img = image_rgb(image.detach().cpu().numpy())
    cells = [[img] + [colorize(np.abs(r.examples[k, index]), "inferno", 0.0, 1.0)
                      for k in range(len(steps))] for r in results.values()]
    return draw_mosaic(mosaic(cells), len(results), len(steps) + 1,
                       col_titles=["input"] + [t.split(".")[-1] for t in steps],
                       row_titles=list(results), cell=cell, col_rotation=30,
                       title=f"cascading randomization from the logits down (|map|, normalised), "
                       f"test image {index}")


def plot_curves(result: SanityResult, verdict: SanityVerdict | None = None):
    """Similarity (each measure) and accuracy versus step, the threshold dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.0))
    ax = fig.subplots()
    x = np.arange(len(result.steps))
    for k in SIMILARITIES:
        ax.errorbar(x, result.similarity[k], yerr=result.similarity_std[k], label=k, marker="o",
                    ms=3, capsize=2, lw=1)
    if not all(math.isnan(a) for a in result.accuracy):
        ax.plot(x, result.accuracy, "k:", label="accuracy", lw=1)
    if verdict is not None:
        ax.axhline(verdict.threshold, color="grey", ls="--", lw=0.8, label="threshold")
    ax.set_xticks(x)
    ax.set_xticklabels([s.split(".")[-1] for s in result.steps], rotation=45, fontsize=7)
    ax.set_ylim(-0.3, 1.05)
    ax.set_ylabel("similarity to trained maps")
    ax.set_title(f"{result.method}: {result.test}", fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    return fig
