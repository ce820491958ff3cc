"""The benchmarks still run (tiny sizes; figures are not looked at: speed is
shown by `make bench`, never asserted here). One test per benchmark that
`python -m bench` runs, each to its own result line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench"
# The benchmarks `python -m bench` runs, read from its own list.
RUN_BY_MAKE_BENCH = re.findall(r"(\w+)\.main\(\)", (BENCH / "__main__.py").read_text())


def test_make_bench_runs_every_benchmark_module() -> None:
    helpers = {"__init__", "__main__", "loadgen", "rawload"}
    modules = {p.stem for p in BENCH.glob("*.py")} - helpers
    assert RUN_BY_MAKE_BENCH and set(RUN_BY_MAKE_BENCH) <= modules


@pytest.mark.timeout(180)
@pytest.mark.parametrize("bench", RUN_BY_MAKE_BENCH)
def test_benchmark_runs_to_its_result_line(bench: str, database_url: str) -> None:
    env = {**os.environ, "BENCH_QUICK": "1", "DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", f"bench.{bench}"], env=env, capture_output=True, text=True,
                          timeout=170)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.count("result:") == 1, done.stdout[-3000:]
    assert done.returncode in (0, 1)  # 1: a target missed, meaningless at these sizes


@pytest.mark.timeout(300)
def test_scale_benchmark_runs_to_its_result_line(database_url: str) -> None:
    env = {**os.environ, "BENCH_QUICK": "1", "DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "bench.scale"], env=env, capture_output=True, text=True,
                          timeout=280)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.count("result:") == 1 and "models     30:" in done.stdout, done.stdout[-3000:]
    assert done.returncode in (0, 1)
