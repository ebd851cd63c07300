"""The case contract: a metric computes, the plugin records and asserts.

Every metric exposes ``evaluate_case(case, ...) -> CaseResult``; a case file is three lines::

    @pytest.mark.metric("aopc")
    def test_aopc(case, dataset, trained, sb_context, judge):
        judge(aopc.evaluate_case(case, dataset, trained, sb_context))

``judge`` (a fixture of ``suite.plugin``) records everything the result holds (score, direction,
baseline, verdict, curves, details, figures) and then asserts its checks in order: the first
failed check fails the case with its message, an ``AssertionError``, so a verdict of the
benchmark, never an error of the run. Nothing under ``suite/metrics/`` records or asserts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Check:
    """One assertion of a case: ``passed``, and the message a failure shows (what was compared,
    the numbers, the margin). ``name`` says which rule it is (``beats_random``, ``oracle``,
    ``random_curve``, ``calibration``, ``accuracy_bar``, ...)."""

    name: str
    passed: bool
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", bool(self.passed))


@dataclass(frozen=True)
class Picture:
    """A matplotlib Figure for the report, with its caption."""

    figure: Any
    title: str


@dataclass(frozen=True)
class CaseResult:
    """What one case found. Every field but ``checks`` goes into results.json (through the
    plugin's ``judge``); ``skip`` (a reason) makes the case a skip after its details are recorded
    (a condition only the computation can see, e.g. a permuted-label model that did not memorise).
    """

    score: float | None = None
    higher_is_better: bool | None = None
    baseline: Mapping[str, Any] | None = None
    beats_baseline: bool | None = None
    curves: Sequence[Mapping[str, Any]] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    figures: Sequence[Picture] = ()
    checks: Sequence[Check] = ()
    skip: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "curves", tuple(self.curves))
        object.__setattr__(self, "figures", tuple(self.figures))
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "details", dict(self.details))
        for c in self.checks:
            if not isinstance(c, Check):
                raise TypeError(f"CaseResult.checks holds {type(c).__name__}, not Check")

    @property
    def failed(self) -> Check | None:
        """The first check that did not pass (the one the case fails with), or None."""
        return next((c for c in self.checks if not c.passed), None)
