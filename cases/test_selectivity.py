"""Selectivity (Montavon et al. 2018): remove the most relevant patch, recompute the map, repeat;
the area under the score curve must be below a random order's."""
import pytest

from suite.metrics import selectivity
from suite.metrics.perturbation import must_beat_random, record_case
from suite.metrics.verdict import check_beats_random

pytestmark = pytest.mark.metric("selectivity")


def test_selectivity(case, dataset, trained, sb_context, record):
    result = selectivity.evaluate_case(case, dataset, trained, sb_context)
    record_case(record, case, result, f"{case.id}: image 0 as patches are removed "
                                      f"({case.method} vs random)")
    if must_beat_random(case):
        check_beats_random(case, result.verdict, what=" (selectivity area)")
