"""Numba kernels of saliencybench: each module holds ``_name_nb`` (jitted), ``name_ref`` (numpy)
and ``name`` (validating public wrapper).  Wrappers take and return numpy arrays."""
from .imputation import impute
from .masking import fraction_to_count, mask_from_order, mask_images, random_order, rank_and_mask
from .perturbation import (
    perturb_regions,
    perturbation_steps,
    region_order,
    region_sums,
    uniform_fill,
)
from .ranking import rank_order, rank_positions
from .similarity import hog_features, hog_pearson, sobel_edges, spearman, ssim

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
    "uniform_fill",
    "perturb_regions",
    "perturbation_steps",
    "impute",
    "spearman",
    "ssim",
    "hog_features",
    "hog_pearson",
    "sobel_edges",
]
