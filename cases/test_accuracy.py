"""Every (dataset, model) pair trains (cached) and must clear its recipe's accuracy bar. The case
also records the model table's row: parameter count and per-class test accuracy."""
import pytest

from suite.training import per_class_accuracy

pytestmark = pytest.mark.metric("accuracy")


def test_accuracy(case, dataset, trained, sb_context, record):
    per_class = per_class_accuracy(trained.model, dataset.x_test, dataset.y_test,
                                   device=sb_context.device)
    names = dataset.classes
    record(score=trained.test_acc, higher_is_better=True,
           details={"train_acc": trained.train_acc, "min_test_acc": trained.min_test_acc,
                    "from_cache": trained.from_cache, "build_seconds": trained.build_seconds,
                    "n_params": sum(p.numel() for p in trained.model.parameters()),
                    "per_class_accuracy": {names[k]: acc for k, (acc, _) in per_class.items()},
                    "per_class_count": {names[k]: n for k, (_, n) in per_class.items()}})
    assert trained.test_acc >= trained.min_test_acc, (
        f"{case.id}: test accuracy {trained.test_acc:.3f} is below the recipe's bar "
        f"{trained.min_test_acc} at scale {case.scale}")
