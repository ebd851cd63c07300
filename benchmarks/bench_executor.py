"""Local sequential vs Ray: the smoke ROAR + KAR selection, fresh caches, wall time ratio.

    python benchmarks/bench_executor.py [--workers 2] [-k EXPR] [--keep DIR]

Runs ``pytest cases/test_roar.py cases/test_kar.py --scale smoke`` twice, each with a fresh
``--cache-dir``: once as today (one process, every case builds what it needs as it runs), once
with ``--executor ray`` against a local Ray instance of ``--workers`` CPUs started here (its
start-up is timed and reported apart). Prints both wall times, the ratio, the builds and their
summed build seconds, and whether the two runs' scores are identical. Not a pytest file (make
test does not run it): it takes minutes.

What stops the ratio from reaching the worker count: the base training (each dataset's model)
and the attribution passes come first and hold the other worker idle (dependency order:
train -> extract -> retrain), each fresh Ray worker process pays the imports (torch, numba, the
suite: seconds), the cases still run one after another afterwards (they only load from the
cache), and on a shared machine the other processes take CPU too.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "cases/test_roar.py", "cases/test_kar.py",
                          "--scale", "smoke", "-p", "no:cacheprovider", "-q", "--allow-verdicts",
                          "--threads", "1", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, res


def builds(cache: Path) -> list[dict]:
    p = cache / "builds.log"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def scores(report: Path) -> dict:
    res = json.loads((report / "results.json").read_text())
    return {c["nodeid"]: (c["score"], c["outcome"]) for c in res["cases"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("-k", default=None, help="a pytest -k expression narrowing the selection")
    ap.add_argument("--keep", default=None, help="keep caches and reports under this folder")
    a = ap.parse_args()
    import ray

    work = Path(a.keep or tempfile.mkdtemp(prefix="sb-bench-executor-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["RAY_AUTH_MODE"] = "token"
    sel = ["-k", a.k] if a.k else []
    for d in ("local", "ray"):
        shutil.rmtree(work / d, ignore_errors=True)

    t_local, r_local = run([*sel, "--cache-dir", str(work / "local/cache"),
                            "--report-dir", str(work / "local/report")], env)
    print(f"local sequential: {t_local:.1f}s ({r_local.stdout.strip().splitlines()[-1]})", flush=True)

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]        # the Ray workers import this checkout
    t0 = time.perf_counter()
    info = ray.init(num_cpus=a.workers, include_dashboard=False, log_to_driver=False)
    t_start = time.perf_counter() - t0
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old
    try:
        t_ray, r_ray = run([*sel, "--cache-dir", str(work / "ray/cache"), "--report-dir",
                            str(work / "ray/report"), "--executor", "ray", "--ray-address",
                            info.address_info["gcs_address"]], env)
    finally:
        ray.shutdown()
    print(f"ray, {a.workers} workers: {t_ray:.1f}s ({r_ray.stdout.strip().splitlines()[-1]}); "
          f"Ray start-up {t_start:.1f}s, not included", flush=True)
    phase = [ln for ln in r_ray.stdout.splitlines() if ln.startswith("ray: ")]
    bl, br = builds(work / "local/cache"), builds(work / "ray/cache")
    print(f"builds: local {len(bl)} ({sum(b['seconds'] for b in bl):.1f} build-seconds), "
          f"ray {len(br)} ({sum(b['seconds'] for b in br):.1f} build-seconds, "
          f"{len({b['pid'] for b in br})} worker processes); ray progress lines: {len(phase) - 1}")
    same = scores(work / "local/report") == scores(work / "ray/report")
    print(f"scores identical (local vs ray): {same}")
    print(f"wall-time ratio local / ray: {t_local / t_ray:.2f}x "
          f"(with Ray's start-up: {t_local / (t_ray + t_start):.2f}x)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    if not re.search(r"passed|failed", r_ray.stdout):
        print(r_ray.stdout[-3000:], r_ray.stderr[-3000:])
        sys.exit(1)


if __name__ == "__main__":
    main()
