"""ROAD (Rong et al. 2022): MoRF and LeRF accuracy of the unchanged model with noisy linear
imputation; score = mean LeRF - mean MoRF accuracy (higher is better)."""
import pytest

from suite.metrics.road import run_case

pytestmark = pytest.mark.metric("road")


def test_road(case, dataset, trained, sb_context, record):
    run_case(case, dataset, trained, sb_context, record)
