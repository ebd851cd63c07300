"""The maps every method draws on a few test images of each (dataset, model), and Grad-CAM at
each declared block (suite.metrics.maps)."""
import pytest

from suite.metrics import maps

pytestmark = pytest.mark.metric("maps")


def test_maps(case, dataset, trained, sb_context, judge):
    judge(maps.evaluate_case(case, dataset, trained, sb_context))


def test_maps_by_layer(case, dataset, trained, sb_context, judge):
    judge(maps.evaluate_by_layer(case, dataset, trained, sb_context))
