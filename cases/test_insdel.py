"""Insertion and deletion (RISE, Petsiuk et al. 2018): the insertion AUC must beat a random
order's; the deletion AUC and its verdict are reported (see suite.metrics.insdel for why)."""
import pytest

from suite.metrics import insdel


@pytest.mark.metric("insdel")
def test_insdel(case, dataset, trained, sb_context, judge):
    judge(insdel.evaluate_case(case, dataset, trained, sb_context))
