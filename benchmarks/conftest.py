"""pytest-benchmark set-up of the speed benchmarks: the ``speed`` fixture, the ratio table, the
ratio regression check (``--ratio-baseline``).

Every benchmark is one side of a comparison group (``@pytest.mark.benchmark(group=...)``) and
times its call through ``speed(fn, side=..., role=...)``: one untimed warm-up round (numba's JIT
compilation, allocator and cache warm-up happen there), then ``rounds`` timed rounds, with the
process CPU time of each timed call recorded beside pytest-benchmark's wall time. The ratios of
each group (``speed_ratios.group_ratios``) are printed after pytest-benchmark's tables and written
into the saved JSON (``"ratios"``). Under ``--benchmark-disable`` (CI's quick mode) ``speed`` calls
``fn`` once and ``speed.quick`` is True: the tests then use small inputs, and every test checks its
side's result against a reference either way.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pytest

from speed_ratios import ROLES, compare, group_ratios, ratios_of_saved_run, table

_RUN = pytest.StashKey[list]()        # this run's benchmark entries (the saved JSON's shape)
_BASELINE = pytest.StashKey[dict]()   # the baseline's ratios
_OUTCOME = pytest.StashKey[dict]()    # ratios, changes, missing (for the terminal summary)


def _tolerance(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a fraction >= 0, "
                                         "e.g. 0.15") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the tolerance must be >= 0 (0.15 = 15 %)")
    return v


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("saliencybench-speed", "saliencybench speed ratios")
    g.addoption("--ratio-baseline", dest="ratio_baseline", default=None, metavar="PATH",
                help="a saved pytest-benchmark JSON (e.g. .benchmarks/<machine>/0001_*.json): fail "
                     "when a group's ratio regressed by more than --ratio-tolerance against it "
                     "(default: none)")
    g.addoption("--ratio-tolerance", dest="ratio_tolerance", type=_tolerance, default=0.15,
                metavar="FRACTION",
                help="how much slower (relative to the other side of its group) the suite may get "
                     "before --ratio-baseline fails the run (default: 0.15)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RUN] = []
    path = config.getoption("ratio_baseline", None)
    if path is None:
        return
    if config.getoption("benchmark_disable", False) or config.getoption("benchmark_skip", False):
        raise pytest.UsageError("--ratio-baseline needs timed benchmarks; drop --benchmark-disable "
                                "/ --benchmark-skip")
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as err:
        raise pytest.UsageError(f"--ratio-baseline {path}: cannot read it ({err.strerror})") from None
    except ValueError as err:
        raise pytest.UsageError(f"--ratio-baseline {path}: not JSON ({err})") from None
    try:
        ratios = ratios_of_saved_run(data)
    except (ValueError, KeyError, TypeError) as err:
        raise pytest.UsageError(f"--ratio-baseline {path}: not a saved benchmark run ({err})") from None
    if not ratios:
        raise pytest.UsageError(f"--ratio-baseline {path}: holds no ratios (a run saved from "
                                "benchmarks/ with --benchmark-autosave or --benchmark-json)")
    config.stash[_BASELINE] = ratios


class Speed:
    """``speed(fn, side=..., role=..., items=1, rounds=5)``: time ``fn`` (no arguments) as this
    test's side of its group and return its result. ``quick``: benchmarks are disabled (one
    plain call)."""

    def __init__(self, benchmark, config: pytest.Config):
        self._bench = benchmark
        self._config = config

    @property
    def quick(self) -> bool:
        return bool(self._bench.disabled)

    def group(self, name: str) -> None:
        """Set this test's group (for parametrized tests whose group depends on the parameters;
        otherwise use ``@pytest.mark.benchmark(group=...)``)."""
        self._bench.group = name

    def info(self, **values) -> None:
        """Add JSON-safe values to this benchmark's ``extra_info`` (shown in the saved JSON)."""
        self._bench.extra_info.update(values)

    def __call__(self, fn, *, side: str, role: str, items: int = 1, rounds: int = 5):
        if role not in ROLES:
            raise ValueError(f"role={role!r}; allowed: {ROLES}")
        if items < 1 or rounds < 1:
            raise ValueError(f"items and rounds must be >= 1, got {items}, {rounds}")
        if self.quick:   # pytest-benchmark's disabled mode: one plain call
            return self._bench.pedantic(fn, rounds=1, iterations=1)
        cpu: list[float] = []

        def timed():
            c0 = time.process_time()
            out = fn()
            cpu.append(time.process_time() - c0)
            return out

        info = self._bench.extra_info
        info.update(side=side, role=role, items=int(items))
        result = self._bench.pedantic(timed, rounds=rounds, warmup_rounds=1, iterations=1)
        cpu = cpu[1:]                    # the warm-up round is not timed by pytest-benchmark
        info.update(cpu_min=min(cpu), cpu_median=statistics.median(cpu))
        self._config.stash[_RUN].append(self._bench.stats.as_dict(include_data=False))
        return result


@pytest.fixture
def speed(benchmark, request) -> Speed:
    return Speed(benchmark, request.config)


def pytest_benchmark_update_json(config, benchmarks, output_json) -> None:
    output_json["ratios"] = group_ratios(output_json.get("benchmarks", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _RUN not in config.stash:
        return
    ratios = group_ratios(config.stash[_RUN])
    outcome = {"ratios": ratios, "changes": [], "missing": []}
    if _BASELINE in config.stash:
        tol = config.getoption("ratio_tolerance")
        outcome["changes"], outcome["missing"] = compare(ratios, config.stash[_BASELINE], tol)
        outcome["tolerance"] = tol
        if any(c.regressed for c in outcome["changes"]) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[_OUTCOME] = outcome


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    outcome = config.stash.get(_OUTCOME, None)
    if outcome is None:
        return
    tr = terminalreporter
    if not outcome["ratios"]:
        if config.getoption("benchmark_disable", False):
            tr.write_line("speed ratios: none (--benchmark-disable: each benchmark ran once and "
                          "checked its result)")
        return
    tr.write_sep("-", "speed ratios (per item; wall: best round, median: median round, cpu: "
                      "process CPU time of the best round)")
    for line in table(outcome["ratios"]):
        tr.write_line(line)
    tr.write_line("suite/<floor>: the suite's overhead over the least work (lower is better); "
                  "<peer>/suite: the suite's speed-up (higher is better)")
    if "tolerance" not in outcome:
        return
    tol = outcome["tolerance"]
    tr.write_sep("-", f"ratios vs --ratio-baseline (wall, tolerance {tol:.0%})")
    for c in outcome["changes"]:
        mark = "REGRESSED" if c.regressed else "ok"
        tr.write_line(f"{c.group:34s} {c.name:28s} {c.baseline:8.2f}x -> {c.current:8.2f}x "
                      f"suite {c.change:+7.1%} relative   {mark}")
    if outcome["missing"]:
        tr.write_line(f"not compared ({len(outcome['missing'])} in the baseline, not in this run: "
                      f"deselected or skipped): {'; '.join(outcome['missing'])}")
    bad = [c for c in outcome["changes"] if c.regressed]
    if bad:
        tr.write_line(f"speed regression: {len(bad)} ratio(s) worse than the baseline by more "
                      f"than {tol:.0%}", red=True, bold=True)


@pytest.fixture(scope="session")
def quick(request) -> bool:
    """True in quick mode (``--benchmark-disable``, or under xdist, where pytest-benchmark turns
    itself off): the benchmarks then use small inputs."""
    config = request.config
    return bool(config.getoption("benchmark_disable", False) or hasattr(config, "workerinput"))
