"""Published expected failures: data, each row with its source.

A case whose (metric, method, dataset, model) matches a row is collected with
``pytest.mark.xfail(strict=False)``: if the method does not beat random it shows as xfailed (the
paper's finding reproduced), if it does it shows as xpassed (the finding did not reproduce here).
Metric modules append their rows with ``expect_failure(...)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Expectation:
    metric: str
    method: str
    reason: str
    source: str
    datasets: str = "*"     # fnmatch pattern over dataset ids
    models: str = "*"       # fnmatch pattern over model ids

    def matches(self, case) -> bool:
        return (case.metric == self.metric and case.method == self.method
                and fnmatchcase(case.dataset, self.datasets) and fnmatchcase(case.model, self.models))

    def as_dict(self) -> dict:
        return {"expected": "fail", **asdict(self)}


EXPECTATIONS: list[Expectation] = []


def expect_failure(metric: str, method: str, *, reason: str, source: str, datasets: str = "*",
                   models: str = "*") -> Expectation:
    if not source:
        raise ValueError(f"expectation {metric}/{method} needs a source (paper, figure or table)")
    e = Expectation(metric, method, reason, source, datasets, models)
    EXPECTATIONS.append(e)
    return e


def expectation_for(case) -> Expectation | None:
    if case.method is None:
        return None
    return next((e for e in EXPECTATIONS if e.matches(case)), None)
