"""Cost of tocsin's SQLAlchemy model signals on a bulk unit of work.

Usage: ``python benchmarks/bench_sqlalchemy.py [--rows N] [--rounds N] [--repeat N] [--file]``.

One process, one SQLite database per measurement (in memory by default,
``--file`` for a temporary file). Each measurement builds N ORM objects,
``add_all()``s them to a Session and commits once (N INSERTs, one flush).
Three mapped classes with the same table layout, each on its own
declarative base, so the variants don't share hooks:

* ``alone``: SQLAlchemy alone: a class never installed, and tocsin's
  process-wide Mapper/Session listeners removed for the measurement, as in
  a program that never calls ``install()``. The baseline of the ratios;
* ``plain``: the same class with tocsin's listeners in place (another base
  is installed): what an uninstalled class pays in such a process;
* ``installed``: ``install(Base)`` for its base, no receivers connected;
* ``one receiver``: ``install(Base)`` and one trivial ``post_save`` receiver.

Rounds are interleaved in a shuffled order; each variant's time in a round is the
fastest of ``--repeat`` runs. The table shows each variant's best and median
time, the ratio of best times (the target is checked on it: the minimum is
the estimate least disturbed by other processes) and, to show the noise, the
median and range over rounds of (variant time / alone time in that round).
Targets: installed <= 1.05x, one receiver <= 1.30x. The receiver's call
count is checked after timing.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import tocsin.sqlalchemy as ts
from tocsin.sqlalchemy import _models as _sqlalchemy_models


class PlainBase(DeclarativeBase):
    pass


class InstalledBase(DeclarativeBase):
    pass


class ReceiverBase(DeclarativeBase):
    pass


def make_model(base: type[DeclarativeBase], name: str) -> type[Any]:
    return type(
        name,
        (base,),
        {
            "__tablename__": "row",
            "__annotations__": {"id": Mapped[int], "name": Mapped[str], "qty": Mapped[int]},
            "id": mapped_column(primary_key=True),
            "name": mapped_column(String(40)),
            "qty": mapped_column(),
        },
    )


PlainRow = make_model(PlainBase, "PlainRow")
InstalledRow = make_model(InstalledBase, "InstalledRow")
ReceiverRow = make_model(ReceiverBase, "ReceiverRow")
ts.install(InstalledBase)
ts.install(ReceiverBase)

calls = [0]


@ts.post_save.connect(sender=ReceiverRow)
def on_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    calls[0] += 1


VARIANTS = {
    "alone": (PlainBase, PlainRow),
    "plain": (PlainBase, PlainRow),
    "installed": (InstalledBase, InstalledRow),
    "one receiver": (ReceiverBase, ReceiverRow),
}


def measure(
    base: type[DeclarativeBase], model: type[Any], rows: int, url: str, *, alone: bool = False
) -> float:
    engine = create_engine(url)
    base.metadata.create_all(engine)
    if alone:
        _sqlalchemy_models._stop_listening()  # restored below
    try:
        gc.collect()
        start = time.perf_counter()
        with Session(engine) as session:
            session.add_all([model(name=f"row {i}", qty=i) for i in range(rows)])
            session.commit()
        return time.perf_counter() - start
    finally:
        engine.dispose()
        if alone:
            _sqlalchemy_models._start_listening()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per variant per round; the fastest counts"
    )
    parser.add_argument("--file", action="store_true", help="a SQLite file instead of :memory:")
    args = parser.parse_args(argv)

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds + 1):  # round 0 warms up
            order = list(VARIANTS)
            random.shuffle(order)
            got: dict[str, float] = {}
            for name in order:
                url = f"sqlite:///{Path(tmp) / f'{round_no}-{name}.db'}" if args.file else "sqlite://"
                best = float("inf")
                for attempt in range(args.repeat):
                    calls[0] = 0
                    where = f"{url}.{attempt}" if args.file else url
                    best = min(best, measure(*VARIANTS[name], args.rows, where, alone=name == "alone"))
                    expected = args.rows if name == "one receiver" else 0
                    if calls[0] != expected:
                        print(
                            f"error: {name}: post_save receiver called {calls[0]} times, expected {expected}"
                        )
                        return 1
                got[name] = best
            if round_no:
                for name, seconds in got.items():
                    times[name].append(seconds)
                    ratios[name].append(seconds / got["alone"])

    import sqlalchemy

    where = "SQLite file" if args.file else "SQLite :memory:"
    print(
        f"{args.rows} INSERTs in one commit, {where}, {args.rounds} rounds x best of {args.repeat}; "
        f"Python {sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}"
    )
    targets = {"alone": None, "plain": None, "installed": 1.05, "one receiver": 1.30}
    best_alone = min(times["alone"])
    print(
        f"{'variant':<14} {'best ms':>8} {'median ms':>10} {'best/best':>10} "
        f"{'per-round ratio: median [min-max]':>34}  target (on best/best)"
    )
    for name in VARIANTS:
        best = min(times[name])
        ratio = best / best_alone
        spread = f"{statistics.median(ratios[name]):.3f}x [{min(ratios[name]):.3f}-{max(ratios[name]):.3f}]"
        target = targets[name]
        verdict = "" if target is None else f"<= {target:.2f}x {'ok' if ratio <= target else 'MISSED'}"
        print(
            f"{name:<14} {best * 1000:>8.1f} {statistics.median(times[name]) * 1000:>10.1f} "
            f"{ratio:>9.3f}x {spread:>34}  {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
