"""Compare tocsin with django.dispatch, blinker, psygnal and PyDispatcher.

Usage: ``python benchmarks/run.py [--quick] [--rounds N] [--sample-ms MS]
[--only SUBSTRING] [--output PATH] [--chart PATH]``.

tocsin runs in the mode it imports in: with its C accelerator where built, in
pure Python with ``TOCSIN_NO_EXTENSIONS=1`` (``make bench`` runs both). Each
mode has its own targets and its own default output file.

Everything runs in one process. For each timed scenario every library's case
and the baseline are timed in interleaved rounds (shuffled order each round);
a round's result for a library is its time divided by the baseline's time in
the same round, after subtracting the cost of timeit's empty loop; the table
shows the median over rounds. After timing, each case checks its receivers'
counters: every receiver that should fire fired exactly once per send, and no
other. The same results are drawn into docs/img/bench.png (see _chart.py).
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _async_scenarios  # noqa: F401 - registers the async rows
from _chart import write_chart
from _libs import Lib, all_libs
from _scenarios import SCENARIOS, Case, Scenario

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "docs" / "img" / "bench.png"
BASELINE = "baseline"
EMPTY = "empty"


def compiled() -> bool:
    """Whether tocsin's C accelerator is active in this process."""
    import tocsin

    return bool(tocsin.__speedups__)


def target_of(scenario: Scenario) -> float | None:
    """The row's target in this mode."""
    if compiled() and scenario.compiled_target is not None:
        return scenario.compiled_target
    return scenario.target


def must_beat_of(scenario: Scenario) -> tuple[str, ...]:
    """The libraries tocsin must beat in this row, in this mode."""
    return scenario.must_beat + (scenario.compiled_must_beat if compiled() else ())


class Timed:
    """A case with its timer and how many times it ran."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.timer = timeit.Timer(case.stmt, globals=case.ns)
        self.runs = 0
        self.number = 1

    def time(self, number: int) -> float:
        self.runs += number
        return self.timer.timeit(number) / number

    def calibrate(self, sample: float) -> None:
        """Choose how many runs make one sample of about *sample* seconds.

        The count is fixed for every round of the row, so it must not come
        from a single timing: a first run that builds caches (tocsin's first
        send builds its routing table) or one preemption of this process made
        one slow timing set a count of a few runs for the whole row, and a
        sample of a few runs is dominated by its fixed costs (caches cold
        after the other cases), which measured such a row 2-10x slower in
        every round. So: one untimed warm-up run, the count grown tenfold
        until a timing lasts a tenth of *sample*, then the time per run taken
        as the fastest of three timings at that count (a preemption or a page
        fault only ever adds time).
        """
        self.time(1)  # warm-up: first-run costs are not a run's cost
        number = 1
        while self.time(number) * number < sample / 10:
            number *= 10
        per_run = min(self.time(number) for _ in range(3))
        self.number = max(1, int(sample / max(per_run, 1e-9)))


def build_cases(scenario: Scenario, libs: list[Lib]) -> dict[str, Timed]:
    assert scenario.build is not None
    cases: dict[str, Timed] = {}
    for lib in libs:
        case = scenario.build(lib)
        if case is not None:
            cases[lib.name] = Timed(case)
    if scenario.baseline is not None:
        cases[BASELINE] = Timed(scenario.baseline())
    cases[EMPTY] = Timed(Case("pass"))
    return cases


def sample_rounds(cases: dict[str, Timed], rounds: int, sample: float) -> dict[str, list[float]]:
    """Time every case once per round, in a new random order each round."""
    for timed in cases.values():
        timed.calibrate(sample)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            samples[name].append(cases[name].time(cases[name].number))
    return samples


def run_timed(scenario: Scenario, libs: list[Lib], rounds: int, sample: float) -> dict[str, Any]:
    cases = build_cases(scenario, libs)
    samples = sample_rounds(cases, rounds, sample)
    errors = [error for timed in cases.values() if (error := timed.case.verify(timed.runs))]
    empty = samples.pop(EMPTY)
    net = {name: [t - e for t, e in zip(values, empty, strict=True)] for name, values in samples.items()}
    result: dict[str, Any] = {"errors": errors, "ns": {}, "value": {}, "vs": {}}
    for name, values in net.items():
        result["ns"][name] = statistics.median(values) * 1e9
        if name == BASELINE:
            continue
        if scenario.unit == "x":
            ratios = (v / b for v, b in zip(values, net[BASELINE], strict=True))
            result["value"][name] = statistics.median(ratios)
        else:  # "us"
            result["value"][name] = statistics.median(values) * 1e6
    tocsin = net.get("tocsin")
    for name in (*must_beat_of(scenario), *([scenario.target_vs] if scenario.target_vs else [])):
        if tocsin is not None and name in net:
            result["vs"][name] = statistics.median(t / o for t, o in zip(tocsin, net[name], strict=True))
    return result


def run_measured(scenario: Scenario, libs: list[Lib]) -> dict[str, Any]:
    assert scenario.measure is not None
    result: dict[str, Any] = {"errors": [], "ns": {}, "value": {}, "vs": {}}
    for lib in libs:
        try:
            value = scenario.measure(lib)
        except AssertionError as exc:
            result["errors"].append(str(exc))
            continue
        if value is not None:
            result["value"][lib.name] = value
        gc.collect()
    tocsin = result["value"].get("tocsin")
    for name in scenario.must_beat:
        other = result["value"].get(name)
        if tocsin is not None and other:
            result["vs"][name] = tocsin / other
    return result


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "us":
        return f"{value:.2f} µs"
    return f"{value:,.0f} B"


def verdict(scenario: Scenario, result: dict[str, Any]) -> str:
    value = result["value"].get("tocsin")
    problems = list(result["errors"])
    if value is None:
        return "n/a"
    if scenario.target_vs is not None:
        value = result["vs"].get(scenario.target_vs)
        if value is None:
            problems.append(f"{scenario.target_vs} not measured")
    slack = 0.5 if scenario.unit == "B" else 0  # bytes are printed rounded
    target = target_of(scenario)
    if value is not None and target is not None and value > target + slack:
        problems.append("over target")
    must_beat = must_beat_of(scenario)
    slower = [name for name, ratio in result["vs"].items() if ratio >= 1 and name in must_beat]
    if slower and scenario.unit != "B":
        problems.append("not faster than " + ", ".join(slower))
    if slower and scenario.unit == "B":
        problems.append("more than " + ", ".join(slower))
    return "**FAIL** (" + "; ".join(problems) + ")" if problems else "pass"


def machine_info() -> list[str]:
    versions = []
    for dist in ("tocsin", "django", "blinker", "psygnal", "PyDispatcher"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Python: {sys.version.split()[0]} ({platform.python_implementation()}) on {platform.platform()}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average before the run: {load}",
        f"- Libraries: {'; '.join(versions)}",
        f"- tocsin imported from: {_where(Path(sys.modules['tocsin'].__file__ or '?').parent)}",
        "- tocsin mode: "
        + (
            "compiled (the C accelerator, `tocsin.__speedups__` True)"
            if compiled()
            else "pure Python (`tocsin.__speedups__` False)"
        ),
    ]


def render(
    rows: list[tuple[Scenario, dict[str, Any]]], libs: list[Lib], args: argparse.Namespace, info: list[str]
) -> str:
    names = [lib.name for lib in libs]
    quick = " (--quick)" if args.quick else ""
    lines = [
        "# tocsin benchmark results",
        "",
        *info,
        f"- Settings: {args.rounds} rounds, ~{args.sample_ms} ms per sample{quick}",
        "",
        (
            "Timed rows: median over interleaved rounds of time(library) / time(baseline) in the same"
            " round (lower is better; timeit's empty-loop cost subtracted). Byte rows: tracemalloc."
        ),
        "Every timed case verified its receivers' call counters after timing.",
        "",
        "| Scenario | target | " + " | ".join(names) + " | baseline | tocsin time | tocsin |",
        "|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    for scenario, result in rows:
        target_value = target_of(scenario)
        target = "-" if target_value is None else ("≤ " + fmt(target_value, scenario.unit))
        if scenario.target_vs is not None:
            target += " " + scenario.target_vs
        cells = [fmt(result["value"].get(name), scenario.unit) for name in names]
        base_ns = result["ns"].get(BASELINE)
        baseline = "-" if scenario.baseline is None else scenario.baseline_name
        if base_ns is not None:
            baseline += f" ({base_ns:,.0f} ns)"
        own_ns = result["ns"].get("tocsin")
        own = "-" if own_ns is None or scenario.unit == "B" else f"{own_ns:,.0f} ns"
        lines.append(
            f"| {scenario.name} | {target} | "
            + " | ".join(cells)
            + f" | {baseline} | {own} | {verdict(scenario, result)} |"
        )
    lines.append("")
    lines.append(
        "tocsin time relative to other libraries (median per-round ratio; < 1 means tocsin is faster):"
    )
    lines.append("")
    for scenario, result in rows:
        if result["vs"]:
            parts = ", ".join(f"{name} {ratio:.2f}" for name, ratio in result["vs"].items())
            lines.append(f"- {scenario.name}: {parts}")
    errors = [error for _, result in rows for error in result["errors"]]
    lines.append("")
    lines.append("Verification: " + ("all receivers fired as expected." if not errors else "FAILED"))
    lines.extend(f"- {error}" for error in errors)
    return "\n".join(lines) + "\n"


def _where(path: Path) -> str:
    """*path* without this machine's part: relative to the checkout (or the venv), else absolute."""
    for base in (HERE.parent, Path(sys.prefix)):
        if path.is_relative_to(base):
            prefix = "" if base == HERE.parent else "$VIRTUAL_ENV/"
            return prefix + path.relative_to(base).as_posix()
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (fewer, shorter rounds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per scenario")
    parser.add_argument("--sample-ms", type=float, help="target duration of one timing sample")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument(
        "--output",
        help="markdown file to write ('-': none); default benchmarks/results.md, or results-pure.md "
        "in pure Python",
    )
    parser.add_argument(
        "--chart",
        default=str(CHART),
        help="PNG chart of the results ('-': none; not drawn for a partial run with --only)",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 9 if args.quick else 101
    if args.sample_ms is None:
        args.sample_ms = 1.0 if args.quick else 3.0
    if args.output is None:
        args.output = str(HERE / ("results.md" if compiled() else "results-pure.md"))
    random.seed(0)
    libs = all_libs()
    info = machine_info()
    rows = []
    for scenario in SCENARIOS:
        if args.only and args.only not in scenario.name:
            continue
        selected = [
            lib
            for lib in libs
            if (scenario.libs is None or lib.name in scenario.libs)
            and (lib.rows is None or scenario.name.startswith(lib.rows))
        ]
        if scenario.measure is not None:
            result = run_measured(scenario, selected)
        else:
            result = run_timed(scenario, selected, args.rounds, args.sample_ms / 1000)
        rows.append((scenario, result))
        print(
            f"... {scenario.name}: "
            + ", ".join(f"{k} {fmt(v, scenario.unit)}" for k, v in result["value"].items()),
            file=sys.stderr,
        )
    text = render(rows, libs, args, info)
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
    if (
        args.chart != "-"
        and not args.only
        and write_chart(rows, [lib.name for lib in libs], info, Path(args.chart))
    ):
        print(f"chart: {args.chart}", file=sys.stderr)
    return 1 if any(result["errors"] for _, result in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
