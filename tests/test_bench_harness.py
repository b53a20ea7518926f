"""The benchmark harness (benchmarks/run.py): how it sizes a row's samples.

A timed row fixes, per case, how many runs make one sample before its rounds
start, and keeps that count for every round. A count of a few runs measures a
sample's fixed costs rather than the statement, so one slow run during
calibration (a first run that builds caches, a preemption) must not decide it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SAMPLE = 0.003  # seconds, the harness's default sample


@pytest.fixture(scope="module")
def run() -> Iterator[ModuleType]:
    """benchmarks/run.py, imported under a private name; sys.path restored afterwards."""
    path = list(sys.path)
    modules = set(sys.modules)
    spec = importlib.util.spec_from_file_location("tocsin_bench_run", BENCHMARKS / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for its own imports
        yield module
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            del sys.modules[name]


def slow_once(call: int) -> tuple[list[int], object]:
    """A cheap statement whose *call*-th run is slow (~20 ms of work), as a first send building tables."""
    calls = [0]

    def stmt() -> None:
        calls[0] += 1
        if calls[0] == call:
            sum(range(1_000_000))

    return calls, stmt


@pytest.mark.parametrize(
    "slow_call",
    [
        pytest.param(1, id="first run"),
        pytest.param(2, id="first timed run"),
        pytest.param(7, id="inside a timing of several runs"),
    ],
)
def test_one_slow_run_does_not_set_a_tiny_sample(run: ModuleType, slow_call: int) -> None:
    calls, stmt = slow_once(slow_call)
    timed = run.Timed(run.Case(stmt))
    timed.calibrate(SAMPLE)
    assert calls[0] >= slow_call  # the slow run happened during calibration
    # Steady runs cost well under a microsecond: ~3 ms of them is thousands of
    # runs. The slow run alone (>= 0.3 ms) would have allowed at most 10.
    assert timed.number >= 100, timed.number
    assert timed.runs == calls[0]  # every run counted, for the receivers' verification


def test_a_statement_slower_than_a_sample_runs_once(run: ModuleType) -> None:
    calls = [0]

    def stmt() -> None:
        calls[0] += 1
        sum(range(1_000_000))  # ~20 ms: longer than a 3 ms sample

    timed = run.Timed(run.Case(stmt))
    timed.calibrate(SAMPLE)
    assert timed.number == 1
    assert timed.runs == calls[0]
