"""The sanity checks' place in the case matrix, their published expected failures and the
controls' calibration rows."""
from __future__ import annotations

from suite.metrics.expectations import expect_failure
from suite.registry import MetricSpec, register_metric
from suite.specs import REAL_DATASETS

_ADEBAYO = "Adebayo et al. 2018, NeurIPS, arXiv 1810.03292"


# -- the case matrix --------------------------------------------------------------------------

_SMOKE_DATA = ("digits", "shapes")

_SMALL_DATA = ("digits", "shapes") + REAL_DATASETS

_ALL_METHODS = ("gradient", "guidedbp", "gradcam", "ggcam", "intgrad", "smoothgrad", "random",
                "sobel")

#: paper scale (opt-in): Adebayo et al.'s methods (gradient, SmoothGrad, gradient x input, guided
#: backprop, Grad-CAM, guided Grad-CAM, integrated gradients), DeconvNet, the controls; their
#: CNN and MLP (on MNIST / Fashion-MNIST) plus ResNet8, on every dataset present, and the
#: ImageNet Inception v3 (suite.models.pretrained; cascading, independent and the grid only)
_PAPER = dict(models=("simplecnn", "mlp", "resnet8", "inception_in1k"), datasets=None,
              methods=_ALL_METHODS + ("ixg", "deconvnet"))

#: images per case
N_IMAGES = {"smoke": 16, "small": 64, "paper": 512}

CASCADE = register_metric(MetricSpec(
    "sanity_cascade", description="cascading model-parameter randomization (Adebayo et al. 2018): "
    "similarity of each method's maps to the trained model's as layers are re-initialised from the "
    "logits down; lower after full randomization is better", higher_is_better=False, source=_ADEBAYO,
    score="mean similarity (Spearman of |map|) of the maps to the trained model's after every "
          "layer was re-initialised from the logits down (lower is better)",
    models={"smoke": ("simplecnn",), "small": ("simplecnn",), "paper": _PAPER["models"]},
    datasets={"smoke": _SMOKE_DATA, "small": _SMALL_DATA, "paper": None},
    methods={"smoke": _ALL_METHODS, "small": _ALL_METHODS + ("ixg", "deconvnet"),
             "paper": _PAPER["methods"]}))

INDEPENDENT = register_metric(MetricSpec(
    "sanity_independent", description="independent layer randomization (Adebayo et al. 2018): one "
    "layer re-initialised at a time; the score is the similarity at the layer the map is least "
    "sensitive to", higher_is_better=False, source=_ADEBAYO,
    score="mean similarity (Spearman of |map|) of the maps to the trained model's over the "
          "single-layer re-initialisations (lower is better)",
    models={"smoke": ("simplecnn",), "small": ("simplecnn",), "paper": _PAPER["models"]},
    datasets={"smoke": ("digits",), "small": _SMALL_DATA, "paper": None},
    methods={"smoke": ("gradient", "guidedbp", "gradcam", "sobel"),
             "small": ("gradient", "guidedbp", "gradcam", "ggcam", "sobel"),
             "paper": _PAPER["methods"]}))

NOISE = register_metric(MetricSpec(
    "sanity_noise", description="model noise test, two modes (the case id's last part): "
    "'additive', the replication's: N(0, 1) noise added to the weights layer by layer from the top "
    "(cascading), similarity and accuracy per step; 'multiplicative': every weight x N(1, s^2) "
    "for growing s, accuracy and map similarity must barely change at s = 0.001 and collapse at "
    "s = 2", higher_is_better=False, source=_ADEBAYO,
    score="similarity (Spearman of |map|) of the maps to the trained model's at the largest "
          "weight noise (lower is better)",
    models={"smoke": ("simplecnn", "mlp"), "small": ("simplecnn", "mlp"),
            "paper": _PAPER["models"]},
    datasets={"smoke": ("digits",), "small": ("digits",), "paper": None},
    methods={"smoke": ("gradient", "guidedbp", "random", "sobel"),
             "small": ("gradient", "guidedbp", "gradcam", "random", "sobel"),
             "paper": _PAPER["methods"]}))

DATARAND = register_metric(MetricSpec(
    "sanity_datarand", description="data randomization test (Adebayo et al. 2018): similarity of "
    "the maps of a model trained on permuted labels to the true-label model's",
    higher_is_better=False, source=_ADEBAYO,
    score="similarity (Spearman of |map|) of the maps of a model trained on permuted labels to "
          "the true-label model's (lower is better)",
    models={"smoke": ("simplecnn",), "small": ("simplecnn",), "paper": _PAPER["models"]},
    datasets={"smoke": ("digits",), "small": ("digits",), "paper": None},
    methods={"smoke": ("gradient", "guidedbp", "gradcam", "sobel"),
             "small": ("gradient", "guidedbp", "gradcam", "ggcam", "intgrad", "sobel"),
             "paper": _PAPER["methods"]}))

GRID = register_metric(MetricSpec(
    "sanity_grid", description="the cascading-randomization picture (Adebayo et al. 2018, Fig. 2): "
    "rows the methods of the cascading cases, columns the trained model then each re-initialised "
    "layer, one figure per example test image", needs_method=False, higher_is_better=False, source=_ADEBAYO,
    score='no score: the cascading-randomization picture',
    models=CASCADE.models, datasets=CASCADE.datasets))

#: example test images of the grid picture (the first ones of the cascading cases' images)
GRID_IMAGES = 2

#: the data randomization test is skipped (with the reason) below this permuted-label train accuracy
MIN_PERMUTED_TRAIN_ACC = 0.9

# -- published expected failures --------------------------------------------------------------

for _m, _what in (("guidedbp", "guided backpropagation"), ("ggcam", "guided Grad-CAM")):
    expect_failure("sanity_cascade", _m, reason=f"{_what} maps stay similar to the trained "
                   "model's under cascading randomization (they act like an edge detector of the "
                   "input)", source=f"{_ADEBAYO}, Sec. 3.1 and Fig. 2 (quantified in Figs. 4 and "
                   "5): \"Guided Backprop (along with Guided GradCAM) is invariant to higher layer "
                   "weights\"")
    expect_failure("sanity_independent", _m, reason=f"{_what} maps are insensitive to "
                   "re-initialising the top layers one at a time",
                   source=f"{_ADEBAYO}, Sec. 3.2 and Fig. 3 (independent randomization): Guided "
                   "Backprop (along with Guided GradCAM) shows invariance to higher layer weights")
    expect_failure("sanity_noise", _m, reason=f"{_what}: weight noise of s = 2 on every layer is a "
                   "full randomization, which these maps survive (inferred from the cascading "
                   "result, not a separate published experiment)",
                   source=f"{_ADEBAYO}, Sec. 3.1 and Fig. 2 (full randomization)")
expect_failure("sanity_datarand", "guidedbp", reason="guided backpropagation maps of a model trained "
               "on permuted labels stay similar to the true-label model's",
               source=f"{_ADEBAYO}, Sec. 4 and Fig. 6: the Guided BackProp mask \"still assigns "
               "positive relevance across most of the digit for the network trained on random "
               "labels\"")
expect_failure("sanity_datarand", "ggcam", reason="guided Grad-CAM (Grad-CAM times guided "
               "backpropagation) keeps guided backpropagation's input structure under label "
               "permutation (inferred: Sec. 4 names only Guided BackProp in words)",
               source=f"{_ADEBAYO}, Sec. 4 and Fig. 6")
for _m, _what in (("intgrad", "integrated gradients"), ("ixg", "input x gradient")):
    expect_failure("sanity_cascade", _m, datasets="digits", reason=f"{_what} multiplies by the "
                   "input: on the digits' zero background both maps are exactly 0, so the rank "
                   "correlation of the absolute maps stays high whatever the weights (the input's "
                   "structure, not the model's)", source=f"{_ADEBAYO}, Sec. 3.1 (\"the danger of "
                   "the visual assessment\", Figs. 2, 4 and 5: the input structure stays visible; "
                   "only the signed rank correlation drops) and Sec. 5.2 (methods that approximate "
                   "input times gradient mostly return the input, especially for sparse inputs)")
expect_failure("sanity_cascade", "deconvnet", reason="DeconvNet, like guided backpropagation, "
               "reconstructs the input (edges) independently of the higher layers",
               source="Nie, Zhang, Patel 2018, ICML, arXiv 1805.07039 (abstract: guided "
               "backpropagation and DeconvNet \"are essentially doing (partial) image recovery "
               "which is unrelated to the network decisions\"); as summarised in " + _ADEBAYO +
               ", Sec. 2.1 (invariant to random Gaussian re-initialisation)")

CALIBRATION = {"sobel": "model-independent: its map is the same at every step (similarity 1)",
               "random": "a fresh random map at every step (similarity about 0)"}


def grid_methods(dataset: str, model: str, scale: str) -> list[str]:
    """The methods of the cascading cases of (dataset, model) at ``scale`` (user methods included),
    in the case order: the rows of the grid picture."""
    from suite.matrix import cases_for

    return [c.method for c in cases_for(CASCADE.name, scale)
            if c.dataset == dataset and c.model == model]
