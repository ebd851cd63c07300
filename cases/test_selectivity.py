"""Selectivity (Montavon et al. 2018): remove the most relevant patch, recompute the map, repeat;
the area under the score curve must be below a random order's."""
import pytest

from suite.metrics import selectivity


@pytest.mark.metric("selectivity")
def test_selectivity(case, dataset, trained, sb_context, judge):
    judge(selectivity.evaluate_case(case, dataset, trained, sb_context))
