"""Pixel flipping (Bach et al. 2015): the area under the score curve must be below a random order's."""
import pytest

from suite.metrics import pixelflip


@pytest.mark.metric("pixelflip")
def test_pixelflip(case, dataset, trained, sb_context, judge):
    judge(pixelflip.evaluate_case(case, dataset, trained, sb_context))
