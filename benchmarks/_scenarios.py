"""The scenario registry: one entry per row of the results table.

A scenario is either *timed* or *measured*:

* timed: ``build(lib)`` returns a :class:`Case` (a statement, its namespace
  and a ``verify`` check) for one library, or ``None`` when the library
  cannot express the scenario; ``baseline()`` returns the case everything is
  compared to. The runner times all cases of a scenario in interleaved rounds
  and reports, per library, the median of the per-round ratios
  ``time(lib) / time(baseline)`` (``unit="x"``), or the median time in
  microseconds (``unit="us"``, no baseline needed).
* measured: ``measure(lib)`` returns a number (bytes) or ``None``.

Adding a row is one call to :func:`register` (see the bottom of this file);
``libs`` restricts a row to some libraries, e.g. ``("tocsin", "django")``.
A ``Case.stmt`` may be a string (compiled into timeit's loop, no call
overhead) or a zero-argument callable (e.g. one running an event loop).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _libs import Lib, Receiver, direct


@dataclass
class Case:
    """Something to time, and how to check it did the right thing."""

    stmt: str | Callable[[], object]
    ns: dict[str, Any] = field(default_factory=dict)
    #: called with the number of times stmt ran; returns an error or None
    verify: Callable[[int], str | None] = lambda runs: None
    keep: object = None  # keeps weakly connected receivers alive


@dataclass
class Scenario:
    """One row of the table."""

    name: str
    target: float | None  # max ratio (unit "x"), max µs (unit "us") or max bytes (unit "B")
    unit: str = "x"
    build: Callable[[Lib], Case | None] | None = None
    baseline: Callable[[], Case] | None = None
    baseline_name: str = "direct loop"
    measure: Callable[[Lib], float | None] | None = None
    libs: tuple[str, ...] | None = None  # None: every library
    #: libraries tocsin must beat in this row (by median per-round ratio)
    must_beat: tuple[str, ...] = ("django", "django-cached", "blinker")
    #: a timed row's target is a ratio to this library's time in the same
    #: round (median over rounds), not to the baseline's
    target_vs: str | None = None
    #: the target when tocsin's C accelerator is active (None: ``target``)
    compiled_target: float | None = None
    #: libraries tocsin must also beat when its C accelerator is active
    compiled_must_beat: tuple[str, ...] = ()


SCENARIOS: list[Scenario] = []


def register(scenario: Scenario) -> Scenario:
    """Add a row to the table (rows keep registration order)."""
    SCENARIOS.append(scenario)
    return scenario


# ---- receivers that count their calls ------------------------------------------


def make_function(hits: list[int], i: int) -> Receiver:
    def receiver(sender: object, *args: object, **kwargs: object) -> None:
        hits[i] += 1

    return receiver


class Counter:
    """A receiver object; ``on`` is connected as a (weak) bound method."""

    def __init__(self) -> None:
        self.hits = 0

    def on(self, sender: object, *args: object, **kwargs: object) -> None:
        self.hits += 1


class Sender:
    """The sender of unfiltered scenarios (a class, as in Django)."""


def _check_hits(label: str, hits: list[int], expected: list[int], runs: int) -> str | None:
    want = [e * runs for e in expected]
    if hits != want:
        return f"{label}: receivers fired {hits[:12]}..., expected {want[:12]}..."
    return None


# ---- sending ---------------------------------------------------------------------


def send_scenario(n: int, *, methods: bool = False, filtered: bool = False) -> tuple[Any, Any]:
    """Build functions for a send with *n* receivers.

    ``filtered``: receiver i is connected for sender class i and the send
    comes from class ``n // 3``, so exactly one receiver must fire.
    """
    fire = n // 3

    def receivers_for(hits: list[int]) -> tuple[list[Receiver], list[Counter]]:
        if methods:
            counters = [Counter() for _ in range(n)]
            return [c.on for c in counters], counters
        return [make_function(hits, i) for i in range(n)], []

    def senders() -> list[Any]:
        return [type(f"Sender{i}", (), {}) for i in range(n)] if filtered else [Sender] * n

    def expected() -> list[int]:
        return [int(not filtered or i == fire) for i in range(n)]

    def read(hits: list[int], counters: list[Counter]) -> list[int]:
        return [c.hits for c in counters] if methods else hits

    def build(lib: Lib) -> Case | None:
        if filtered and not lib.filters_senders:
            return None
        hits = [0] * n
        receivers, counters = receivers_for(hits)
        sig = lib.make()
        classes = senders()
        for r, cls in zip(receivers, classes, strict=True):
            lib.connect(sig, r, cls if filtered else None)
        sender = classes[fire] if filtered else Sender
        ns = {**lib.ns, "sig": sig, "sender": sender}

        def verify(runs: int) -> str | None:
            return _check_hits(lib.name, read(hits, counters), expected(), runs)

        return Case(lib.send_stmt, ns, verify, keep=(receivers, counters))

    def baseline() -> Case:
        hits = [0] * n
        receivers, counters = receivers_for(hits)
        classes = senders()
        sender = classes[fire] if filtered else Sender
        firing = [receivers[fire]] if filtered else receivers
        ns = {"direct": direct, "receivers": firing, "sig": object(), "sender": sender}

        def verify(runs: int) -> str | None:
            return _check_hits("direct", read(hits, counters), expected(), runs)

        return Case("direct(receivers, sig, sender, value=1)", ns, verify, keep=(receivers, counters))

    return build, baseline


# ---- connect + disconnect ------------------------------------------------------------


CYCLE_HITS = [0]


def cycle_receiver(sender: object, *args: object, **kwargs: object) -> None:
    """A module-level function: the usual shape of a receiver that is connected and disconnected."""
    CYCLE_HITS[0] += 1


def build_cycle(lib: Lib, *, with_sender: bool = False) -> Case | None:
    """``connect`` then ``disconnect`` of a module-level function, for any sender or one sender."""
    stmt = lib.cycle_sender_stmt if with_sender else lib.cycle_stmt
    if stmt is None:
        return None
    hits = CYCLE_HITS
    hits[0] = 0
    rcv = cycle_receiver
    sig = lib.make()
    snd = Sender()  # an instance: weakly referenceable, matched by identity
    other = Sender()
    sender = snd if with_sender else Sender
    ns = {**lib.ns, "sig": sig, "rcv": rcv, "snd": snd, "sender": sender}

    def verify(runs: int) -> str | None:
        exec(lib.send_stmt, ns)  # disconnected: must not fire
        if hits != [0]:
            return f"{lib.name}: receiver still connected after connect+disconnect"
        exec(stmt.split(";")[0], ns)  # connect: must fire once
        exec(lib.send_stmt, ns)
        if with_sender:
            exec(lib.send_stmt, {**ns, "sender": other})  # another sender: must not fire
        lib.disconnect(sig, rcv, snd if with_sender else None)
        if hits != [1]:
            return f"{lib.name}: connected receiver fired {hits[0]} times, expected 1"
        hits[0] = 0
        return None

    return Case(stmt, ns, verify, keep=(rcv, snd, other))


def baseline_cycle() -> Case:
    rcv = cycle_receiver
    return Case("lst.append(rcv); lst.remove(rcv)", {"lst": [], "rcv": rcv})


# ---- memory ---------------------------------------------------------------------------

MEMORY_N = 2000


def bytes_per_receiver(lib: Lib) -> float:
    """Bytes allocated per connected (weak, any-sender) function receiver, send tables included."""
    hits = [0] * MEMORY_N
    receivers = [make_function(hits, i) for i in range(MEMORY_N)]
    sig = lib.make()
    ns = {**lib.ns, "sig": sig, "sender": Sender}
    exec(lib.send_stmt, ns)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r in receivers:
            lib.connect(sig, r, None)
        exec(lib.send_stmt, ns)  # let caches and routing tables be built
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if hits != [1] * MEMORY_N:
        msg = f"{lib.name}: not every connected receiver fired once"
        raise AssertionError(msg)
    for r in receivers:
        lib.disconnect(sig, r, None)
    return (after - before) / MEMORY_N


def bytes_per_sender_connection(lib: Lib) -> float | None:
    """Bytes per connection when each receiver has its own sender, send tables included.

    2,000 weak function receivers, each connected for a sender of its own (an
    instance, weakly referenceable), then one send from every sender so that
    routing tables and caches exist. Receivers and senders are created
    before tracing starts.
    """
    if not lib.filters_senders:
        return None
    hits = [0] * MEMORY_N
    receivers = [make_function(hits, i) for i in range(MEMORY_N)]
    senders = [Sender() for _ in range(MEMORY_N)]
    sig = lib.make()
    ns = {**lib.ns, "sig": sig, "sender": Sender}
    exec(lib.send_stmt, ns)
    code = compile(lib.send_stmt, "<send>", "exec")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r, sender in zip(receivers, senders, strict=True):
            lib.connect(sig, r, sender)
        for sender in senders:
            ns["sender"] = sender
            exec(code, ns)
        ns["sender"] = Sender
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if hits != [1] * MEMORY_N:
        msg = f"{lib.name}: not every receiver fired once for its own sender"
        raise AssertionError(msg)
    for r, sender in zip(receivers, senders, strict=True):
        lib.disconnect(sig, r, sender)
    return (after - before) / MEMORY_N


TABLE_ANY = 10
TABLE_SENDERS = 100


def bytes_for_table(lib: Lib) -> float | None:
    """Bytes for 10 any-sender receivers and 100 receivers each with its own sender.

    All connections, then one send from each of the 100 senders (each reaches
    the 10 any-sender receivers and its own): the connections plus every
    routing table or cache the library builds for those sends.
    """
    if not lib.filters_senders:
        return None
    hits = [0] * (TABLE_ANY + TABLE_SENDERS)
    receivers = [make_function(hits, i) for i in range(TABLE_ANY + TABLE_SENDERS)]
    senders = [Sender() for _ in range(TABLE_SENDERS)]
    sig = lib.make()
    ns = {**lib.ns, "sig": sig, "sender": Sender}
    exec(lib.send_stmt, ns)
    code = compile(lib.send_stmt, "<send>", "exec")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r in receivers[:TABLE_ANY]:
            lib.connect(sig, r, None)
        for r, sender in zip(receivers[TABLE_ANY:], senders, strict=True):
            lib.connect(sig, r, sender)
        for sender in senders:
            ns["sender"] = sender
            exec(code, ns)
        ns["sender"] = Sender
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if hits != [TABLE_SENDERS] * TABLE_ANY + [1] * TABLE_SENDERS:
        msg = f"{lib.name}: receivers did not fire as expected"
        raise AssertionError(msg)
    for r in receivers[:TABLE_ANY]:
        lib.disconnect(sig, r, None)
    for r, sender in zip(receivers[TABLE_ANY:], senders, strict=True):
        lib.disconnect(sig, r, sender)
    return after - before


def bytes_kept_per_cycle(lib: Lib) -> float:
    """Bytes still allocated per connect+disconnect cycle once the cycles end.

    The slope between N and 2N cycles, so one-off allocations (a dict
    compacted once, a cache filled once) do not count, only growth.
    """
    hits = CYCLE_HITS
    hits[0] = 0
    rcv = cycle_receiver
    sig = lib.make()
    ns = {**lib.ns, "sig": sig, "rcv": rcv, "sender": Sender}
    code = compile(lib.cycle_stmt, "<cycle>", "exec")
    for _ in range(100):
        exec(code, ns)
    exec(lib.send_stmt, ns)
    gc.collect()
    tracemalloc.start()
    try:
        marks = []
        for _ in range(2):
            for _ in range(MEMORY_N):
                exec(code, ns)
            exec(lib.send_stmt, ns)
            gc.collect()
            marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    if hits != [0]:
        msg = f"{lib.name}: receiver fired after being disconnected"
        raise AssertionError(msg)
    return max(0.0, (marks[1] - marks[0]) / MEMORY_N)


# ---- the table ---------------------------------------------------------------------------


def _send_row(
    name: str,
    target: float,
    compiled: float,
    n: int,
    *,
    compiled_must_beat: tuple[str, ...] = (),
    **kwargs: bool,
) -> None:
    build, baseline = send_scenario(n, **kwargs)
    register(
        Scenario(
            name,
            target,
            build=build,
            baseline=baseline,
            compiled_target=compiled,
            compiled_must_beat=compiled_must_beat,
        )
    )


# Targets: pure Python, then with the C accelerator (issue 17). Four pure-Python targets of issue 12
# are restated (docs/benchmarks.md, "Targets, restated"): bound methods 1.45x -> 1.6x, connect +
# disconnect 0.5x -> 0.6x blinker (0.9x with a sender), 380 B -> 450 B per own-sender connection.
_send_row("send, 0 receivers", 1.15, 0.3, 0, compiled_must_beat=("psygnal-fast",))
_send_row("send, 1 weak function receiver", 1.6, 0.6, 1)
_send_row("send, 10 receivers", 1.3, 0.55, 10)
_send_row("send, 100 receivers", 1.25, 0.55, 100)
_send_row("send, 10 receivers for 10 sender classes, 1 fires", 1.6, 0.6, 10, filtered=True)
_send_row("send, 10 weak bound methods", 1.6, 0.65, 10, methods=True)
register(
    Scenario(
        "connect + disconnect",
        0.6,
        build=build_cycle,
        baseline=baseline_cycle,
        baseline_name="list append + remove",
        target_vs="blinker",
        compiled_target=0.25,
    )
)
register(
    Scenario(
        "connect + disconnect, with a sender",
        0.9,
        build=lambda lib: build_cycle(lib, with_sender=True),
        baseline=baseline_cycle,
        baseline_name="list append + remove",
        target_vs="blinker",
        compiled_target=0.5,  # issue 12's target, which only a compiled connect() can approach
    )
)
register(
    Scenario(
        "bytes per connected receiver",
        400,
        unit="B",
        measure=bytes_per_receiver,
        must_beat=("django", "django-cached", "blinker"),
    )
)
register(
    Scenario(
        "bytes per connection, each receiver with its own sender",
        450,
        unit="B",
        measure=bytes_per_sender_connection,
        must_beat=("django", "django-cached", "blinker"),
    )
)
register(
    Scenario(
        "bytes for 10 any-sender + 100 per-sender receivers, tables included",
        64_000,
        unit="B",
        measure=bytes_for_table,
        must_beat=("django", "django-cached", "blinker"),
    )
)
register(
    Scenario(
        "bytes kept per connect+disconnect cycle",
        0,
        unit="B",
        measure=bytes_kept_per_cycle,
        must_beat=(),
    )
)
