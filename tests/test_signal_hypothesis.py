"""Property tests: random connect/disconnect/collect/send sequences against a model.

The machine connects receivers (objects and bound methods, weak or strong,
with priorities and uids) for senders of every kind the dispatcher tells
apart, opens ``connected_to`` blocks, drops receivers and senders, makes
receivers raise, and sends with ``send`` and ``send_robust``; after every
step the signal's connections must match the model.

By default (and in CI) it runs 50 examples. ``TOCSIN_HYPOTHESIS_DEEP=1``
runs 1,500, and ``TOCSIN_HYPOTHESIS_DEEP=N`` runs N, always with fresh random
examples (even where Hypothesis's CI profile would replay the same ones):
``make hypothesis-deep``. Reproduce a run with ``--hypothesis-seed``.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tocsin

RECEIVER_SLOTS = range(3)
# Senders, by how the dispatcher must match them (see tocsin._senders):
# identity for objects that support weak references, even when they compare
# equal ("eq-*"); type and equality for the others, so two equal strings,
# ints or tuples that are distinct objects are one sender, while 1, True and
# 1.0 are three.
OBJECT_SLOTS = ("obj-a", "obj-b", "eq-a", "eq-b")
SENDER_SLOTS = (
    *OBJECT_SLOTS,
    "text-a",
    "text-b",
    "big-a",
    "big-b",
    "tuple-a",
    "tuple-b",
    "one",
    "true",
    "one-float",
    None,
)


def _deep_examples() -> int | None:
    """The examples asked for by TOCSIN_HYPOTHESIS_DEEP, or None for the default run."""
    value = os.environ.get("TOCSIN_HYPOTHESIS_DEEP", "").strip()
    if value in ("", "0"):
        return None
    if not value.isdigit():
        msg = f"TOCSIN_HYPOTHESIS_DEEP must be 1 (1,500 examples) or a number of examples; got {value!r}."
        raise ValueError(msg)
    return 1500 if value == "1" else int(value)


class ReceiverFailedError(Exception):
    """What a failing receiver raises; its argument is the call's label."""


class Receiver:
    """A receiver object; connected as itself or through its bound method."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log
        self.fails = False

    def _run(self, call: str) -> None:
        self.log.append(call)
        if self.fails:
            raise ReceiverFailedError(call)

    def __call__(self, **kwargs: Any) -> None:
        self._run(f"{self.label}.call")

    def method(self, **kwargs: Any) -> None:
        self._run(f"{self.label}.method")


class Sender:
    def __init__(self, label: str) -> None:
        self.label = label


class EqualSender(Sender):
    """Equal to every other EqualSender, with one hash: still a distinct sender."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqualSender)

    def __hash__(self) -> int:
        return 1


def _equal_copy(value: Any) -> Any:
    """An object equal to *value* that is not *value* itself (made at run time, never a shared constant)."""
    if isinstance(value, str):
        copy: Any = value[:1] + value[1:]
    elif isinstance(value, int):
        copy = int(str(value))
    else:
        copy = tuple(item for item in value)
    assert copy == value
    assert copy is not value
    return copy


def _value_senders() -> dict[str | None, Any]:
    """Pairs of equal values that are distinct objects, and 1, True and 1.0."""
    text, big, pair = "text", 10**30, ("t", 1)
    return {
        "text-a": text,
        "text-b": _equal_copy(text),
        "big-a": big,
        "big-b": _equal_copy(big),
        "tuple-a": pair,
        "tuple-b": _equal_copy(pair),
        "one": 1,
        "true": True,
        "one-float": 1.0,
    }


def sender_label(sender: Any) -> Any:
    """The sender as the model knows it: a label per object, or (type, value) for values."""
    if sender is None:
        return None
    if isinstance(sender, Sender):
        return sender.label
    return (type(sender).__name__, sender)


def receiver_label(receiver: Any) -> str:
    """ "r0#3.call" for the object itself, "r0#3.method" for its bound method."""
    if isinstance(receiver, Receiver):
        return f"{receiver.label}.call"
    return f"{receiver.__self__.label}.method"


class Records(logging.Handler):
    """Keeps the records logged on logger ``tocsin``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Conn:
    label: str  # the receiver object
    kind: str  # "call" or "method"
    sender: Any  # sender_label() of the sender, None for any
    strong: bool
    priority: int
    seq: int


@dataclass
class Block:
    """An open connected_to() block and what it keeps."""

    manager: Any  # the context manager (it holds the receiver and the sender)
    key: Any  # the model key of the connection it made, or None
    receiver: str  # label of the receiver object it holds alive
    sender: str | None  # label of the sender object it holds alive, if an object


class SignalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.signal = tocsin.Signal()
        self.log: list[str] = []
        self.counter = itertools.count()
        self.receivers: dict[int, Receiver] = {slot: self.new_receiver(slot) for slot in RECEIVER_SLOTS}
        self.dropped: dict[str, Receiver] = {}  # our refs given up, maybe kept by the signal or a block
        self.failing: set[str] = set()  # labels of receiver objects that raise
        self.senders: dict[str | None, Any] = {
            "obj-a": Sender("obj-a#0"),
            "obj-b": Sender("obj-b#0"),
            "eq-a": EqualSender("eq-a#0"),
            "eq-b": EqualSender("eq-b#0"),
            **_value_senders(),
            None: None,
        }
        self.model: dict[tuple[Any, Any], Conn] = {}
        self.seq = 0
        self.blocks: list[Block] = []  # open connected_to() blocks, innermost last
        self.handler = Records()
        self.records = self.handler.records
        logger = logging.getLogger("tocsin")
        logger.addHandler(self.handler)
        # pytest's log capture would keep every record, and with it the
        # receiver in the traceback, until the test ends (see send()).
        self.propagate, logger.propagate = logger.propagate, False

    def new_receiver(self, slot: int) -> Receiver:
        return Receiver(f"r{slot}#{next(self.counter)}", self.log)

    def label(self, slot: str | None) -> Any:
        return sender_label(self.senders[slot])

    # ---- rules -------------------------------------------------------------

    @rule(
        slot=st.sampled_from(RECEIVER_SLOTS),
        kind=st.sampled_from(["call", "method"]),
        sender=st.sampled_from(SENDER_SLOTS),
        strong=st.booleans(),
        priority=st.integers(-1, 1),
        uid=st.sampled_from([None, None, "u", 0]),
    )
    def connect(  # noqa: PLR0917 - hypothesis passes the rule's arguments by keyword
        self, slot: int, kind: str, sender: str | None, strong: bool, priority: int, uid: Any
    ) -> None:
        obj = self.receivers[slot]
        receiver = obj if kind == "call" else obj.method
        self.signal.connect(
            receiver, sender=self.senders[sender], weak=not strong, dispatch_uid=uid, priority=priority
        )
        key = (("uid", uid) if uid is not None else (obj.label, kind), self.label(sender))
        if key not in self.model:
            self.seq += 1
            self.model[key] = Conn(obj.label, kind, self.label(sender), strong, priority, self.seq)

    @rule(
        slot=st.sampled_from(RECEIVER_SLOTS),
        kind=st.sampled_from(["call", "method"]),
        sender=st.sampled_from(SENDER_SLOTS),
        uid=st.sampled_from([None, None, "u", 0]),
    )
    def disconnect(self, slot: int, kind: str, sender: str | None, uid: Any) -> None:
        obj = self.receivers[slot]
        receiver = obj if kind == "call" else obj.method
        removed = self.signal.disconnect(receiver, sender=self.senders[sender], dispatch_uid=uid)
        key = (("uid", uid) if uid is not None else (obj.label, kind), self.label(sender))
        expected = self.model.pop(key, None)
        assert removed is (expected is not None)
        if expected is not None:
            self.release_if_unreferenced(expected.label)

    @rule(
        slot=st.sampled_from(RECEIVER_SLOTS),
        kind=st.sampled_from(["call", "method"]),
        sender=st.sampled_from(SENDER_SLOTS),
        priority=st.integers(-1, 1),
        local=st.booleans(),
    )
    def enter_block(self, slot: int, kind: str, sender: str | None, priority: int, local: bool) -> None:
        """Open a connected_to() block (held strongly), global or local to this context."""
        obj = self.receivers[slot]
        receiver = obj if kind == "call" else obj.method
        target = self.senders[sender]
        manager = self.signal.connected_to(receiver, sender=target, priority=priority, local=local)
        manager.__enter__()
        label = self.label(sender)
        key: Any = ("local", next(self.counter)) if local else ((obj.label, kind), label)
        made = local or key not in self.model
        if made:
            self.seq += 1
            self.model[key] = Conn(obj.label, kind, label, True, priority, self.seq)
        held = label if isinstance(target, Sender) else None
        # The block keeps the receiver alive until it exits, even when it made
        # no connection (the receiver was already connected, maybe weakly).
        self.blocks.append(Block(manager, key if made else None, obj.label, held))

    @rule()
    def exit_block(self) -> None:
        """Close the innermost block: exactly the connection it made goes, and what it held is let go."""
        if not self.blocks:
            return
        block = self.blocks.pop()
        block.manager.__exit__(None, None, None)
        if block.key is not None:
            self.model.pop(block.key, None)
        receiver, held = block.receiver, block.sender
        del block  # the last reference to the manager: it lets go of the receiver and the sender
        self.release_if_unreferenced(receiver)
        if held is not None and not self.sender_alive(held):
            self.model = {k: c for k, c in self.model.items() if c.sender != held}

    def teardown(self) -> None:
        logger = logging.getLogger("tocsin")
        logger.removeHandler(self.handler)
        logger.propagate = self.propagate
        while self.blocks:  # resets the context variable of local blocks, innermost first
            self.blocks.pop().manager.__exit__(None, None, None)

    def sender_alive(self, label: str) -> bool:
        """Whether a sender object is still ours, or held by an open block."""
        current = [s.label for s in self.senders.values() if isinstance(s, Sender)]
        return label in current or any(block.sender == label for block in self.blocks)

    @rule(slot=st.sampled_from(RECEIVER_SLOTS))
    def collect_receiver(self, slot: int) -> None:
        """Drop our reference to a receiver object (freed at once unless something keeps it)."""
        old = self.receivers[slot]
        self.receivers[slot] = self.new_receiver(slot)
        self.dropped[old.label] = old
        del old
        self.release_if_unreferenced(next(reversed(self.dropped)))

    @rule(slot=st.sampled_from(OBJECT_SLOTS))
    def collect_sender(self, slot: str) -> None:
        """Replace a sender with a new object (often at the same address, and for eq-*, equal to it)."""
        cls, old_label = type(self.senders[slot]), self.senders[slot].label
        self.senders[slot] = None  # freed at once (no cycles), unless an open block holds it
        self.senders[slot] = cls(f"{slot}#{next(self.counter)}")
        if not self.sender_alive(old_label):
            self.model = {k: c for k, c in self.model.items() if c.sender != old_label}

    @rule(slot=st.sampled_from(RECEIVER_SLOTS), fails=st.booleans())
    def set_failing(self, slot: int, fails: bool) -> None:
        """Make a receiver object raise (as itself and through its bound method), or stop raising."""
        obj = self.receivers[slot]
        obj.fails = fails
        (self.failing.add if fails else self.failing.discard)(obj.label)

    def release_if_unreferenced(self, label: str) -> None:
        """Model the receiver's death once we dropped it and nothing else keeps it.

        A strong connection keeps it, and so does an open connected_to()
        block (documented: the block holds its receiver until it exits, even
        when the connection it found was weak).
        """
        if label not in self.dropped:
            return
        if any(c.label == label and c.strong for c in self.model.values()):
            return
        if any(block.receiver == label for block in self.blocks):
            return
        del self.dropped[label]  # no cycles: refcounting frees it here
        self.model = {k: c for k, c in self.model.items() if c.label != label}

    @rule(sender=st.sampled_from(SENDER_SLOTS), robust=st.booleans())
    def send(self, sender: str | None, robust: bool) -> None:
        self.log.clear()
        target = self.senders[sender]
        expected = self.expected(sender)
        failing = [call for call in expected if call.split(".")[0] in self.failing]
        if robust:
            responses = self.signal.send_robust(target)
            assert self.log == expected
            assert [receiver_label(r) for r, _ in responses] == expected
            raised = [r for _, r in responses if isinstance(r, ReceiverFailedError)]
            assert [exc.args[0] for exc in raised] == failing
            # One ERROR record per receiver that raised, in order, with its exception.
            assert [record.levelno for record in self.records] == [logging.ERROR] * len(raised)
            logged = [record.exc_info[1] if record.exc_info else None for record in self.records]
            assert all(a is b for a, b in zip(logged, raised, strict=True))
            assert all("Receiver" in record.getMessage() for record in self.records)
        else:
            raised = []
            try:
                responses = self.signal.send(target)
            except ReceiverFailedError as exc:
                raised = [exc]
                responses = []
            assert [exc.args[0] for exc in raised] == failing[:1]  # the first one stops the send
            assert self.log == (expected[: expected.index(failing[0]) + 1] if failing else expected)
            assert [receiver_label(r) for r, _ in responses] == ([] if failing else expected)
            assert self.records == []
        assert self.signal.has_listeners(target) is bool(expected)
        # A raised exception's traceback holds the receiver's frame (so the
        # receiver) in a reference cycle, and so does its log record; drop
        # both, or the model's "freed at once" would not hold for receivers
        # that raised. Not the dispatcher's doing: the caller holds them.
        for error in raised:
            error.__traceback__ = None
        self.records.clear()

    # ---- model ---------------------------------------------------------------

    def expected(self, sender: str | None) -> list[str]:
        label = self.label(sender)
        matching = [
            c for c in self.model.values() if c.sender is None or (label is not None and c.sender == label)
        ]
        matching.sort(key=lambda c: (-c.priority, c.seq))
        return [f"{c.label}.{c.kind}" for c in matching]

    @invariant()
    def connections_match_model(self) -> None:
        listed = self.signal.connections()
        by_seq = sorted(self.model.values(), key=lambda c: c.seq)
        assert [receiver_label(conn.receiver) for conn in listed] == [f"{c.label}.{c.kind}" for c in by_seq]
        for conn, model in zip(listed, by_seq, strict=True):
            assert conn.priority == model.priority
            assert conn.weak is (not model.strong)
            assert sender_label(conn.sender) == model.sender


TestSignalMachine = SignalMachine.TestCase
_deep = _deep_examples()
if _deep is None:
    TestSignalMachine.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
else:
    # Fresh examples every run (derandomize=False overrides Hypothesis's CI
    # profile), longer sequences, and no per-test time limit.
    TestSignalMachine.settings = settings(
        max_examples=_deep, stateful_step_count=50, deadline=None, derandomize=False
    )


def test_receiver_that_raised_is_freed_when_dropped() -> None:
    """The sequence the deep run found: a receiver dropped after it raised dies at once (nothing keeps it)."""
    machine = SignalMachine()
    try:
        machine.set_failing(fails=True, slot=0)
        machine.connect(slot=0, kind="call", sender="obj-a", strong=False, priority=0, uid=None)
        machine.send(sender="obj-a", robust=False)
        machine.send(sender="obj-a", robust=True)
        machine.collect_receiver(slot=0)
        machine.connections_match_model()
        assert machine.signal.connections() == []
    finally:
        machine.teardown()


def test_open_block_keeps_a_weak_receiver_alive() -> None:
    """The sequence that broke the old model: an open block keeps a dropped weak receiver until it exits."""
    machine = SignalMachine()
    try:
        machine.connect(slot=0, kind="method", sender="obj-a", strong=False, priority=0, uid=None)
        machine.enter_block(slot=0, kind="method", sender="obj-a", priority=0, local=False)
        machine.collect_receiver(slot=0)
        machine.connections_match_model()
        assert len(machine.signal.connections()) == 1  # kept by the open block
        machine.send(sender="obj-a", robust=False)
        machine.exit_block()
        machine.connections_match_model()
        assert machine.signal.connections() == []  # gone with the block
    finally:
        machine.teardown()
