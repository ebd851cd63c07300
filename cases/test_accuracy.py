"""Every (dataset, model) pair trains (cached) and must clear its recipe's accuracy bar."""
import pytest

pytestmark = pytest.mark.metric("accuracy")


def test_accuracy(case, trained, record):
    record(score=trained.test_acc, higher_is_better=True,
           details={"train_acc": trained.train_acc, "min_test_acc": trained.min_test_acc,
                    "from_cache": trained.from_cache, "build_seconds": trained.build_seconds})
    assert trained.test_acc >= trained.min_test_acc, (
        f"{case.id}: test accuracy {trained.test_acc:.3f} is below the recipe's bar "
        f"{trained.min_test_acc} at scale {case.scale}")
