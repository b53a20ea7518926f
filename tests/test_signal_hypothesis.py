"""Property tests: random connect/disconnect/collect/send sequences against a model."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tocsin

RECEIVER_SLOTS = range(3)
SENDER_SLOTS = ("obj-a", "obj-b", "text", "int", None)


class Receiver:
    """A receiver object; connected as itself or through its bound method."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    def __call__(self, **kwargs: Any) -> None:
        self.log.append(f"{self.label}.call")

    def method(self, **kwargs: Any) -> None:
        self.log.append(f"{self.label}.method")


class Sender:
    def __init__(self, label: str) -> None:
        self.label = label


@dataclass
class Conn:
    label: str  # the receiver object
    kind: str  # "call" or "method"
    sender: Any  # sender label (value senders: the value), None for any
    strong: bool
    priority: int
    seq: int


class SignalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.signal = tocsin.Signal()
        self.log: list[str] = []
        self.counter = itertools.count()
        self.receivers: dict[int, Receiver] = {slot: self.new_receiver(slot) for slot in RECEIVER_SLOTS}
        self.dropped: dict[str, Receiver] = {}  # our refs given up, maybe kept by the signal
        self.senders: dict[str | None, Any] = {
            "obj-a": Sender("obj-a#0"),
            "obj-b": Sender("obj-b#0"),
            "text": "text",
            "int": 7,
            None: None,
        }
        self.model: dict[tuple[Any, str | None], Conn] = {}
        self.seq = 0
        # Open connected_to() blocks, innermost last: the context manager, the
        # model key of the connection it made (None if it made none), and the
        # label of the sender object it holds alive until it exits.
        self.blocks: list[tuple[Any, Any, Any]] = []

    def new_receiver(self, slot: int) -> Receiver:
        return Receiver(f"r{slot}#{next(self.counter)}", self.log)

    def sender_label(self, slot: str | None) -> Any:
        sender = self.senders[slot]
        return sender.label if isinstance(sender, Sender) else sender

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
        key = (("uid", uid) if uid is not None else (obj.label, kind), self.sender_label(sender))
        if key not in self.model:
            self.seq += 1
            self.model[key] = Conn(obj.label, kind, self.sender_label(sender), strong, priority, self.seq)

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
        key = (("uid", uid) if uid is not None else (obj.label, kind), self.sender_label(sender))
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
        block = self.signal.connected_to(receiver, sender=target, priority=priority, local=local)
        block.__enter__()
        label = self.sender_label(sender)
        key: Any = ("local", next(self.counter)) if local else ((obj.label, kind), label)
        made = local or key not in self.model
        if made:
            self.seq += 1
            self.model[key] = Conn(obj.label, kind, label, True, priority, self.seq)
        self.blocks.append((block, key if made else None, label if isinstance(target, Sender) else None))

    @rule()
    def exit_block(self) -> None:
        """Close the innermost block: exactly the connection it made goes."""
        if not self.blocks:
            return
        block, key, held = self.blocks.pop()
        block.__exit__(None, None, None)
        if key is not None:
            expected = self.model.pop(key, None)
            if expected is not None:
                self.release_if_unreferenced(expected.label)
        if held is not None and not self.sender_alive(held):
            del block  # the last reference to a replaced sender: it dies now
            self.model = {k: c for k, c in self.model.items() if c.sender != held}

    def teardown(self) -> None:
        while self.blocks:  # resets the context variable of local blocks, innermost first
            self.blocks.pop()[0].__exit__(None, None, None)

    def sender_alive(self, label: str) -> bool:
        """Whether a sender object is still ours, or held by an open block."""
        current = [s.label for s in self.senders.values() if isinstance(s, Sender)]
        return label in current or any(held == label for _, _, held in self.blocks)

    @rule(slot=st.sampled_from(RECEIVER_SLOTS))
    def collect_receiver(self, slot: int) -> None:
        """Drop our reference to a receiver object and collect garbage."""
        old = self.receivers[slot]
        self.receivers[slot] = self.new_receiver(slot)
        self.dropped[old.label] = old
        del old
        self.release_if_unreferenced(next(reversed(self.dropped)))

    @rule(slot=st.sampled_from(["obj-a", "obj-b"]))
    def collect_sender(self, slot: str) -> None:
        """Replace a sender with a new object (often at the same address)."""
        old_label = self.senders[slot].label
        self.senders[slot] = None  # freed at once (no cycles), unless an open block holds it
        self.senders[slot] = Sender(f"{slot}#{next(self.counter)}")
        if not self.sender_alive(old_label):
            self.model = {k: c for k, c in self.model.items() if c.sender != old_label}

    def release_if_unreferenced(self, label: str) -> None:
        """Model the signal letting go of a receiver we dropped once no strong connection keeps it."""
        if label not in self.dropped:
            return
        if any(c.label == label and c.strong for c in self.model.values()):
            return
        del self.dropped[label]  # no cycles: refcounting frees it here
        self.model = {k: c for k, c in self.model.items() if c.label != label}

    @rule(sender=st.sampled_from(SENDER_SLOTS), robust=st.booleans())
    def send(self, sender: str | None, robust: bool) -> None:
        self.log.clear()
        method = self.signal.send_robust if robust else self.signal.send
        responses = method(self.senders[sender])
        expected = self.expected(sender)
        assert self.log == expected
        assert len(responses) == len(expected)
        assert self.signal.has_listeners(self.senders[sender]) is bool(expected)

    # ---- model ---------------------------------------------------------------

    def expected(self, sender: str | None) -> list[str]:
        label = self.sender_label(sender)
        matching = [
            c for c in self.model.values() if c.sender is None or (label is not None and c.sender == label)
        ]
        matching.sort(key=lambda c: (-c.priority, c.seq))
        return [f"{c.label}.{c.kind}" for c in matching]

    @invariant()
    def connections_match_model(self) -> None:
        listed = self.signal.connections()
        assert len(listed) == len(self.model)
        by_seq = sorted(self.model.values(), key=lambda c: c.seq)
        for conn, model in zip(listed, by_seq, strict=True):
            receiver: Any = conn.receiver
            obj = receiver if model.kind == "call" else receiver.__self__
            assert obj.label == model.label
            assert conn.priority == model.priority
            assert conn.weak is (not model.strong)
            sender_label = conn.sender.label if isinstance(conn.sender, Sender) else conn.sender
            assert sender_label == model.sender


TestSignalMachine = SignalMachine.TestCase
TestSignalMachine.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
