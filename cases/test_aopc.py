"""Region perturbation / AOPC (Samek et al. 2017): the MoRF AOPC must beat a random order."""
import pytest

from suite.metrics import aopc


@pytest.mark.metric("aopc")
def test_aopc(case, dataset, trained, sb_context, judge):
    judge(aopc.evaluate_case(case, dataset, trained, sb_context))
