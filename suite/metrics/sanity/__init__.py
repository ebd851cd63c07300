"""Sanity checks for saliency maps (Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, NeurIPS 2018,
arXiv 1810.03292): do the maps change when the model or the data is randomized?

Four tests, each a pure function returning a frozen :class:`SanityResult`:

* :func:`cascading_randomization`: re-initialise the declared layers from the logits downwards
  (``order="top_down"``, the paper's; ``"bottom_up"`` offered), one at a time, cumulatively.
* :func:`independent_randomization`: re-initialise one layer at a time, the rest kept trained.
* :func:`model_noise`: weights times N(1, s^2) (or plus N(0, s^2)) for growing levels s.
* :func:`data_randomization`: the same architecture trained on permuted labels.

How maps are compared (``similarities``):

* Each map is pooled over channels with the method's default aggregation
  (``suite.methods.default_aggregation``) and divided by its maximum absolute value, so signed maps
  lie in [-1, 1] and non-negative ones in [0, 1] (an all-zero map stays zero).
* ``spearman_abs``: Spearman rank correlation of the absolute maps (the paper's headline measure);
  ``spearman``: of the signed maps; ``ssim``: SSIM of the absolute maps (data range 1, 7x7
  uniform window); ``hog``: Pearson correlation of the HOG features of the absolute maps (cells of
  ``hog_cell(H, W)`` pixels, 2x2-cell blocks). All batched over images (``kernels.similarity``).
* A constant map (e.g. an all-zero Grad-CAM of a randomized model) has no ranking: Spearman and
  HOG give NaN there; we count it as similarity 0 (it keeps nothing of the original) and report how
  many maps were constant.
* Targets: the trained model's predicted class, the same at every step (only the model changes).
* The reference maps are computed on the trained model with the run's seed, every compared map
  (trained included, step 0) with seed + 1. Deterministic methods are unaffected; for stochastic
  ones (SmoothGrad) step 0 measures the method's own reproducibility (its "trained-model level");
  the ``random`` control redraws its map and so scores about 0 at every step; the ``sobel``
  control ignores the model and scores exactly 1 at every step (the calibration rows).

Verdict (:func:`sanity_verdict`): with ``s`` the mean similarity (``PRIMARY`` measure) after full
randomization (cascade: the last step; noise: the largest level; data: the permuted-label model;
independent: the *mean* over the single-layer steps, compared with ``THRESHOLD_INDEPENDENT``) and
``level`` the trained-model level (step 0), a method passes when

    s < THRESHOLD   and   s < level - MARGIN.

The thresholds are ours (the paper shows curves, not a cut-off): 0.5 separates gradient / Grad-CAM
(0.0-0.3 after full randomization here) from maps that keep most of their ranking.

Failing cases fail, unless the expectation table lists the published failure (guided
backpropagation and guided Grad-CAM), which makes them xfail.

The package, by concept: ``spec`` (the case matrix, expectation rows, calibration rows),
``similarity`` (map normalisation and the similarity measures), ``randomize`` (the tests and
their cache round-trip), ``mprt`` (the efficient MPRT), ``verdict`` (the rule, calibration checks,
details), ``figures`` (pictures), ``cases`` (each metric's ``evaluate_*`` -> ``CaseResult``).
Everything is re-exported here: ``from suite.metrics import sanity as S; S.cascading_randomization``.
"""
from __future__ import annotations

from suite.metrics.sanity.spec import (CALIBRATION, CASCADE, DATARAND, GRID, GRID_IMAGES,  # noqa: F401
                                       INDEPENDENT, MIN_PERMUTED_TRAIN_ACC, N_IMAGES, NOISE,
                                       grid_methods)
from suite.metrics.sanity.similarity import (PRIMARY, SIMILARITIES, comparer, hog_cell,  # noqa: F401
                                             normalize_maps, similarities)
from suite.metrics.sanity.randomize import (FLOOR_IMAGES, LAYER_NOISE, NOISE_LEVELS,  # noqa: F401
                                            NOISE_VARIANTS, SANITY_VERSION, MapRun, SanityResult,
                                            cached, cascading_randomization, data_randomization,
                                            independent_randomization, layer_noise, model_noise)
from suite.metrics.sanity.verdict import (MARGIN, RULE, THRESHOLD, THRESHOLD_INDEPENDENT,  # noqa: F401
                                          SanityVerdict, calibration_checks, details,
                                          sanity_verdict)
from suite.metrics.sanity.mprt import EfficientMPRTResult, discrete_entropy, efficient_mprt  # noqa: F401
from suite.metrics.sanity.figures import plot_curves, plot_grid, plot_method_grid  # noqa: F401
from suite.metrics.sanity.cases import (evaluate_cascade, evaluate_datarand,  # noqa: F401
                                        evaluate_grid, evaluate_independent, evaluate_noise,
                                        images)

__all__ = ["CALIBRATION", "EfficientMPRTResult", "GRID_IMAGES", "LAYER_NOISE", "MARGIN",
           "MIN_PERMUTED_TRAIN_ACC", "MapRun", "NOISE_LEVELS", "NOISE_VARIANTS", "N_IMAGES",
           "PRIMARY", "SANITY_VERSION", "SIMILARITIES", "SanityResult", "SanityVerdict",
           "THRESHOLD", "THRESHOLD_INDEPENDENT", "cached", "calibration_checks",
           "cascading_randomization", "comparer", "data_randomization", "details",
           "discrete_entropy", "efficient_mprt", "evaluate_cascade", "evaluate_datarand",
           "evaluate_grid", "evaluate_independent", "evaluate_noise", "grid_methods", "hog_cell",
           "images", "independent_randomization", "layer_noise", "model_noise", "normalize_maps",
           "plot_curves", "plot_grid", "plot_method_grid", "sanity_verdict", "similarities"]
