"""ROAR (Hooker et al. 2019): remove the most important inputs, retrain, lower accuracy is better."""
import pytest

from suite.metrics import roar


@pytest.mark.metric("roar")
def test_roar(case, dataset, trained, sb_context, judge):
    judge(roar.evaluate_case(case, dataset, trained, sb_context))
