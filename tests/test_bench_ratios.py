"""The speed benchmarks' ratio arithmetic (benchmarks/speed_ratios.py) on hand-made benchmark
stats, and the benchmarks' conftest (ratio table, saved JSON, --ratio-baseline) under pytester."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("_bench_speed_ratios", BENCH / "speed_ratios.py")
R = sys.modules.setdefault("_bench_speed_ratios", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(R)


def entry(group, side, role, t_min, t_median=None, items=1, cpu=None):
    info = {"side": side, "role": role, "items": items}
    if cpu is not None:
        info["cpu_min"] = cpu
    return {"group": group, "name": f"test_{side}", "stats": {"min": t_min, "median": t_median or t_min},
            "extra_info": info}


def test_overhead_and_speedup_ratios_per_item():
    run = [entry("road", "suite", "suite", 2.0, 3.0, cpu=1.5),
           entry("road", "forward", "floor", 1.0, 2.0, cpu=1.0),
           entry("road", "quantus", "peer", 10.0, 12.0, items=10, cpu=9.0),  # 1.0 s per item
           entry("kernel", "kernel", "suite", 0.5, items=256),
           entry("kernel", "ref", "peer", 1.0, items=16)]
    got = R.group_ratios(run)
    assert set(got) == {"road", "kernel"}
    assert got["road"]["suite/forward"] == {"kind": R.OVERHEAD, "wall": 2.0, "wall_median": 1.5,
                                            "cpu": 1.5}
    # quantus: 1.0 s/item vs the suite's 2.0 s for 1 item
    assert got["road"]["quantus/suite"] == {"kind": R.SPEEDUP, "wall": 0.5, "wall_median": pytest.approx(0.4),
                                            "cpu": pytest.approx(0.9 / 1.5)}
    # kernel 0.5/256 per item, reference 1/16 per item: 32x
    assert got["kernel"]["ref/kernel"]["wall"] == pytest.approx(32.0)
    assert got["kernel"]["ref/kernel"]["cpu"] is None   # no CPU time recorded


def test_groups_without_a_suite_side_or_roles_are_left_out():
    run = [entry("a", "forward", "floor", 1.0), entry("b", "suite", "suite", 1.0),
           {"group": "c", "name": "x", "stats": {"min": 1.0}, "extra_info": {}}]
    assert R.group_ratios(run) == {}


def test_bad_roles_and_two_suite_sides_are_errors():
    with pytest.raises(ValueError, match="role 'base'"):
        R.group_ratios([entry("a", "x", "base", 1.0)])
    with pytest.raises(ValueError, match="2 suite sides"):
        R.group_ratios([entry("a", "x", "suite", 1.0), entry("a", "y", "suite", 1.0)])


def test_compare_counts_the_suite_getting_slower_relative_to_the_other_side():
    base = R.group_ratios([entry("g", "suite", "suite", 2.0), entry("g", "fl", "floor", 1.0),
                           entry("g", "peer", "peer", 10.0), entry("h", "suite", "suite", 1.0),
                           entry("h", "fl", "floor", 1.0)])
    # suite 2.6 s: overhead 2.0 -> 2.6 (+30 %), speed-up 5.0 -> 10/2.6 (suite 30 % slower)
    cur = R.group_ratios([entry("g", "suite", "suite", 2.6), entry("g", "fl", "floor", 1.0),
                          entry("g", "peer", "peer", 10.0)])
    changes, missing = R.compare(cur, base, 0.15)
    by = {(c.group, c.name): c for c in changes}
    assert by[("g", "suite/fl")].change == pytest.approx(0.3)
    assert by[("g", "peer/suite")].change == pytest.approx(0.3)
    assert all(c.regressed for c in changes)
    assert missing == ["h: suite/fl"]
    assert not any(c.regressed for c in R.compare(cur, base, 0.31)[0])
    # a faster suite is a negative change
    fast = R.group_ratios([entry("g", "suite", "suite", 1.0), entry("g", "fl", "floor", 1.0)])
    changes, _ = R.compare(fast, base, 0.0)
    (c,) = changes
    assert c.change == pytest.approx(-0.5) and not c.regressed
    with pytest.raises(ValueError, match="tolerance"):
        R.compare(cur, base, -0.1)


def test_saved_run_ratios_are_read_or_recomputed():
    run = [entry("g", "suite", "suite", 2.0), entry("g", "fl", "floor", 1.0)]
    assert R.ratios_of_saved_run({"benchmarks": run}) == R.group_ratios(run)
    assert R.ratios_of_saved_run({"ratios": {"x": {}}, "benchmarks": run}) == {"x": {}}
    with pytest.raises(ValueError):
        R.ratios_of_saved_run([1, 2])
    lines = R.table(R.group_ratios(run))
    assert lines[1].split()[:3] == ["g", "suite/fl", "2.00x"]


# -- the conftest under pytester ------------------------------------------------------------------

BENCH_FILE = """
import time
import pytest

@pytest.mark.benchmark(group="sleep")
def test_suite(speed):
    assert speed(lambda: time.sleep(0.002) or 1, side="suite", role="suite", rounds=2) == 1

@pytest.mark.benchmark(group="sleep")
def test_floor(speed):
    speed(lambda: time.sleep(0.001), side="floor", role="floor", rounds=2)
"""


@pytest.fixture
def bench_dir(pytester, monkeypatch):
    # an inner run is not an xdist worker, even when this test runs in one (make test's -n 2):
    # pytest-benchmark reads PYTEST_XDIST_WORKER and would disable timing
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    pytester.makeconftest((BENCH / "conftest.py").read_text())
    (pytester.path / "speed_ratios.py").write_text((BENCH / "speed_ratios.py").read_text())
    pytester.makepyfile(test_sleep=BENCH_FILE)
    return pytester


def _baseline(path, ratio):
    row = {"suite/floor": {"kind": "suite/floor", "wall": ratio, "wall_median": ratio, "cpu": None}}
    path.write_text(json.dumps({"ratios": {"sleep": row, "gone": row}}))
    return str(path)


def test_ratios_in_the_terminal_and_the_saved_json(bench_dir):
    out = bench_dir.path / "run.json"
    res = bench_dir.runpytest("-p", "no:cacheprovider", "--benchmark-only", f"--benchmark-json={out}")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["*speed ratios*", "sleep*suite/floor*x*"])
    saved = json.loads(out.read_text())
    assert set(saved["ratios"]) == {"sleep"}
    r = saved["ratios"]["sleep"]["suite/floor"]
    assert r["wall"] > 1.0 and r["cpu"] is not None   # 2 ms sleep vs 1 ms sleep
    assert {b["extra_info"]["role"] for b in saved["benchmarks"]} == {"suite", "floor"}


def test_quick_mode_runs_each_body_once(bench_dir):
    res = bench_dir.runpytest("-p", "no:cacheprovider", "--benchmark-disable")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["speed ratios: none (--benchmark-disable*"])


def test_ratio_baseline_fails_on_a_regression_only(bench_dir):
    # the ratio is about 2 (2 ms vs 1 ms sleeps): far worse than 0.001, far better than 1000
    bad = bench_dir.runpytest("-p", "no:cacheprovider", "--benchmark-only", "--ratio-baseline",
                              _baseline(bench_dir.path / "b1.json", 0.001))
    assert bad.ret == pytest.ExitCode.TESTS_FAILED
    bad.stdout.fnmatch_lines(["*sleep*suite/floor*REGRESSED*", "speed regression: 1 ratio(s)*"])
    good = bench_dir.runpytest("-p", "no:cacheprovider", "--benchmark-only", "--ratio-baseline",
                               _baseline(bench_dir.path / "b2.json", 1000.0))
    assert good.ret == pytest.ExitCode.OK
    good.stdout.fnmatch_lines(["*sleep*suite/floor*ok", "not compared (1 in the baseline*gone: suite/floor"])


@pytest.mark.parametrize("args, message", [
    (["--ratio-tolerance", "-1"], "*tolerance must be >= 0*"),
    (["--ratio-tolerance", "lots"], "*is not a number*"),
    (["--ratio-baseline", "missing.json"], "*missing.json: cannot read it*"),
    (["--ratio-baseline", "{bad}", "--benchmark-disable"], "*needs timed benchmarks*"),
])
def test_bad_ratio_options_are_usage_errors(bench_dir, args, message):
    bad = _baseline(bench_dir.path / "b.json", 1.0)
    res = bench_dir.runpytest("-p", "no:cacheprovider", *[a.replace("{bad}", bad) for a in args])
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([message])


def test_a_baseline_without_ratios_is_a_usage_error(bench_dir):
    p = bench_dir.path / "empty.json"
    p.write_text(json.dumps({"benchmarks": []}))
    res = bench_dir.runpytest("-p", "no:cacheprovider", "--benchmark-only", "--ratio-baseline", str(p))
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*holds no ratios*"])
