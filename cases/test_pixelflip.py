"""Pixel flipping (Bach et al. 2015): the area under the score curve must be below a random order's."""
import pytest

from suite.metrics import pixelflip
from suite.metrics.perturbation import must_beat_random, record_case
from suite.metrics.verdict import check_beats_random

pytestmark = pytest.mark.metric("pixelflip")


def test_pixelflip(case, dataset, trained, sb_context, record):
    result = pixelflip.evaluate_case(case, dataset, trained, sb_context)
    record_case(record, case, result, f"{case.id}: image 0 while flipping ({case.method} vs random)")
    if must_beat_random(case):
        check_beats_random(case, result.verdict, what=" (pixel flipping area)")
