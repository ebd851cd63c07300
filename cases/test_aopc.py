"""Region perturbation / AOPC (Samek et al. 2017): the MoRF AOPC must beat a random order."""
import pytest

from suite.metrics import aopc
from suite.metrics.perturbation import must_beat_random, record_case
from suite.metrics.verdict import check_beats_random

pytestmark = pytest.mark.metric("aopc")


def test_aopc(case, dataset, trained, sb_context, record):
    result = aopc.evaluate_case(case, dataset, trained, sb_context)
    record_case(record, case, result, f"{case.id}: image 0 after MoRF steps ({case.method} vs random)")
    if must_beat_random(case):
        check_beats_random(case, result.verdict, what=" (AOPC, MoRF)")
