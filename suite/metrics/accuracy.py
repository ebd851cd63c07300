"""The accuracy gate: every (dataset, model) pair trains (cached) and must clear its recipe's
accuracy bar (maps of a model that learned nothing mean nothing). The case also records the model
table's row: parameter count and per-class test accuracy."""
from __future__ import annotations

from suite.contract import CaseResult, Check
from suite.registry import MetricSpec, register_metric

ACCURACY = register_metric(MetricSpec(
    "accuracy", description="test accuracy of the trained model (a gate: maps of a model that "
    "learned nothing mean nothing)", needs_method=False, higher_is_better=True,
    score="the trained model's accuracy on the test split (higher is better; the case asserts "
          "the recipe's bar)"))


def evaluate_case(case, dataset, trained, ctx) -> CaseResult:
    from suite.training import per_class_accuracy

    per_class = per_class_accuracy(trained.model, dataset.x_test, dataset.y_test, device=ctx.device)
    names = dataset.classes
    return CaseResult(
        score=trained.test_acc, higher_is_better=True,
        details={"train_acc": trained.train_acc, "min_test_acc": trained.min_test_acc,
                 "from_cache": trained.from_cache, "build_seconds": trained.build_seconds,
                 "n_params": sum(p.numel() for p in trained.model.parameters()),
                 "per_class_accuracy": {names[k]: acc for k, (acc, _) in per_class.items()},
                 "per_class_count": {names[k]: n for k, (_, n) in per_class.items()}},
        checks=[Check("accuracy_bar", trained.test_acc >= trained.min_test_acc, (
            f"{case.id}: test accuracy {trained.test_acc:.3f} is below the recipe's bar "
            f"{trained.min_test_acc} at scale {case.scale}"))])
