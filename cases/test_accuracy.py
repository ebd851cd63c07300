"""Every (dataset, model) pair trains (cached) and must clear its recipe's accuracy bar; the case
also records the model table's row (suite.metrics.accuracy)."""
import pytest

from suite.metrics import accuracy


@pytest.mark.metric("accuracy")
def test_accuracy(case, dataset, trained, sb_context, judge):
    judge(accuracy.evaluate_case(case, dataset, trained, sb_context))
