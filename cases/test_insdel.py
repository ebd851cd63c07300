"""Insertion and deletion (RISE, Petsiuk et al. 2018): the insertion AUC must beat a random
order's; the deletion AUC and its verdict are reported (see suite.metrics.insdel for why)."""
import pytest

from suite.metrics import insdel
from suite.metrics.perturbation import must_beat_random, record_case
from suite.metrics.verdict import check_beats_random

pytestmark = pytest.mark.metric("insdel")


def test_insdel(case, dataset, trained, sb_context, record):
    result = insdel.evaluate_case(case, dataset, trained, sb_context)
    record_case(record, case, result, f"{case.id}: image 0, deletion then insertion steps "
                                      f"({case.method} vs random)")
    if must_beat_random(case):
        check_beats_random(case, result.verdict, what=" (insertion AUC)")
