"""Numba kernels of saliencybench: each module holds ``_name_nb`` (jitted), ``name_ref`` (numpy)
and ``name`` (validating public wrapper).  Wrappers take and return numpy arrays.

Threading: unless ``NUMBA_THREADING_LAYER`` says otherwise, parallel kernels run on numba's
``workqueue`` layer. The OpenMP layer's idle threads spin after each launch and steal the cores
from torch, which the metrics call between kernel launches: measured on 2 cores, a loop of one
region-perturbation step plus one small conv took 24 ms a step with OpenMP and 4.4 ms with
workqueue.
"""
import os as _os

import numba as _numba

if not _os.environ.get("NUMBA_THREADING_LAYER"):
    _numba.config.THREADING_LAYER = "workqueue"
from .imputation import impute
from .masking import fraction_to_count, mask_from_order, mask_images, random_order, rank_and_mask
from .perturbation import (
    perturb_regions,
    perturbation_steps,
    region_order,
    region_sums,
    top_region,
    uniform_fill,
)
from .ranking import rank_order, rank_positions
from .similarity import hog_features, hog_pearson, spearman, ssim

__all__ = [
    "rank_order",
    "rank_positions",
    "fraction_to_count",
    "random_order",
    "mask_from_order",
    "mask_images",
    "rank_and_mask",
    "region_sums",
    "region_order",
    "top_region",
    "uniform_fill",
    "perturb_regions",
    "perturbation_steps",
    "impute",
    "spearman",
    "ssim",
    "hog_features",
    "hog_pearson",
]
