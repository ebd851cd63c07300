"""Sanity checks (Adebayo et al. 2018): cascading and independent layer randomization, model
noise and data randomization. A method passes when its maps change (suite.metrics.sanity);
guided backprop / guided Grad-CAM are published failures (xfail); the sobel control and the
random baseline are calibration checks (similarity 1 and about 0 at every step)."""
import pytest

from suite.metrics import sanity as S


@pytest.mark.metric("sanity_cascade")
def test_sanity_cascade(case, dataset, trained, sb_context, judge):
    judge(S.evaluate_cascade(case, dataset, trained, sb_context))


@pytest.mark.metric("sanity_grid")
def test_sanity_grid_cascade(case, dataset, trained, sb_context, judge):
    judge(S.evaluate_grid(case, dataset, trained, sb_context))


@pytest.mark.metric("sanity_independent")
def test_sanity_independent(case, dataset, trained, sb_context, judge):
    judge(S.evaluate_independent(case, dataset, trained, sb_context))


@pytest.mark.metric("sanity_noise")
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_sanity_noise(case, mode, dataset, trained, sb_context, judge):
    judge(S.evaluate_noise(case, mode, dataset, trained, sb_context))


@pytest.mark.metric("sanity_datarand")
def test_sanity_datarand(case, dataset, trained, sb_context, judge):
    judge(S.evaluate_datarand(case, dataset, trained, sb_context))
