"""KAR (Hooker et al. 2019): keep only the most important inputs, retrain, higher accuracy is better."""
import pytest

from suite.metrics import roar


@pytest.mark.metric("kar")
def test_kar(case, dataset, trained, sb_context, judge):
    judge(roar.evaluate_case(case, dataset, trained, sb_context))
