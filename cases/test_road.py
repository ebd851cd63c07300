"""ROAD (Rong et al. 2022): MoRF and LeRF accuracy of the unchanged model with noisy linear
imputation; score = mean MoRF accuracy (lower is better), LeRF recorded beside it."""
import pytest

from suite.metrics import road


@pytest.mark.metric("road")
def test_road(case, dataset, trained, sb_context, judge):
    judge(road.evaluate_case(case, dataset, trained, sb_context))
