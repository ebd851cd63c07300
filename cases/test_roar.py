"""ROAR (Hooker et al. 2019): remove the most important inputs, retrain, lower accuracy is better."""
import pytest

from suite.metrics.roar import run_case, skip_reason

pytestmark = pytest.mark.metric("roar")


def test_roar(case, sb_context, record, request):
    if skip_reason(case):
        pytest.skip(skip_reason(case))
    dataset, trained = request.getfixturevalue("dataset"), request.getfixturevalue("trained")
    run_case(case, dataset, trained, sb_context, record, mode="remove")
