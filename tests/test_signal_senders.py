"""Sender matching: identity, value, any-sender, id reuse and odd senders."""

from __future__ import annotations

import enum
import gc
import weakref
from typing import Any

import pytest

import tocsin
from _reuse import AddressReuse


def handler(**kwargs: Any) -> str:
    return "handler"


class Sender:
    """A plain, weakly referenceable sender."""


class Model:
    """Equal when the primary keys are equal, like a Django model instance."""

    def __init__(self, pk: int) -> None:
        self.pk = pk

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.pk == self.pk

    def __hash__(self) -> int:
        return hash(self.pk)


class Slotted:
    __slots__ = ()


class SlottedUnhashable:
    __slots__ = ("value",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.value = 1

    def __eq__(self, other: object) -> bool:
        return True


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class BadHash:
    __slots__ = ()

    def __hash__(self) -> int:
        raise TypeError("no hash for you")


class FailingHash:
    """A __hash__ that fails with something other than TypeError."""

    __slots__ = ()

    def __hash__(self) -> int:
        raise ValueError("not ready to be hashed")


class Noisy:
    """Records its own death; slotted so the signal must hold it strongly."""

    __slots__ = ("deaths",)

    def __init__(self, deaths: list[str]) -> None:
        self.deaths = deaths

    def __del__(self) -> None:
        self.deaths.append("dead")


@pytest.fixture(name="sig", params=[False, True], ids=["plain", "use_caching"])
def _sig(request: pytest.FixtureRequest) -> tocsin.Signal:
    return tocsin.Signal(use_caching=request.param)


def calls(sig: tocsin.Signal, sender: object) -> list[Any]:
    return [response for _, response in sig.send(sender)]


class TestAnySender:
    def test_none_means_any(self, sig: tocsin.Signal) -> None:
        """A receiver connected without sender gets every send."""
        sig.connect(handler)
        senders: tuple[object, ...] = (None, Sender(), "s", 0, [], Slotted())
        for sender in senders:
            assert calls(sig, sender) == ["handler"]

    @pytest.mark.parametrize("sender", [0, "", False, 0.0, (), frozenset()], ids=repr)
    def test_falsy_senders_are_ordinary(self, sig: tocsin.Signal, sender: object) -> None:
        """0, "", False... are senders like any other, never "any sender"."""
        sig.connect(handler, sender=sender)
        assert calls(sig, sender) == ["handler"]
        assert calls(sig, None) == []
        assert calls(sig, "other") == []
        assert sig.has_listeners(sender)
        assert not sig.has_listeners()

    def test_specific_and_any_merge(self, sig: tocsin.Signal) -> None:
        """A sender's receivers and the any-sender ones run together, in connection order."""
        sender = Sender()

        def specific(**kwargs: Any) -> str:
            return "specific"

        sig.connect(specific, sender=sender)
        sig.connect(handler)
        assert calls(sig, sender) == ["specific", "handler"]
        assert calls(sig, Sender()) == ["handler"]


class TestIdentitySenders:
    def test_instances_match_by_identity(self, sig: tocsin.Signal) -> None:
        """Two distinct equal objects never receive each other's signals."""
        a, b = Model(1), Model(1)
        assert a == b
        sig.connect(handler, sender=a)
        # Send in both orders: Django's cache mixes them up depending on order.
        assert calls(sig, b) == []
        assert calls(sig, a) == ["handler"]
        assert calls(sig, b) == []
        assert not sig.has_listeners(b)
        assert sig.has_listeners(a)

    def test_equal_instances_other_order(self, sig: tocsin.Signal) -> None:
        """Sending from the equal object first does not poison the sender's route."""
        a, b = Model(1), Model(1)
        sig.connect(handler, sender=a)
        assert calls(sig, a) == ["handler"]
        assert calls(sig, b) == []
        assert calls(sig, a) == ["handler"]

    def test_sender_eq_never_called(self, sig: tocsin.Signal) -> None:
        """Matching never calls a weakly referenceable sender's __eq__ or __hash__."""

        class Touchy:
            def __eq__(self, other: object) -> bool:
                raise AssertionError("__eq__ called")

            def __hash__(self) -> int:
                raise AssertionError("__hash__ called")

        a, b = Touchy(), Touchy()
        sig.connect(handler, sender=a)
        assert calls(sig, a) == ["handler"]
        assert calls(sig, b) == []
        assert sig.disconnect(handler, sender=a)

    def test_classes_as_senders(self, sig: tocsin.Signal) -> None:
        """Classes are senders by identity; a subclass is another sender."""

        class Base:
            pass

        class Child(Base):
            pass

        sig.connect(handler, sender=Base)
        assert calls(sig, Base) == ["handler"]
        assert calls(sig, Child) == []
        assert calls(sig, Base()) == []

    def test_enum_members(self, sig: tocsin.Signal) -> None:
        """Enum members are senders; other members are not."""
        sig.connect(handler, sender=Color.RED)
        assert calls(sig, Color.RED) == ["handler"]
        assert calls(sig, Color(1)) == ["handler"]
        assert calls(sig, Color.BLUE) == []
        assert calls(sig, 1) == []

    def test_dead_sender_connections_dropped(self, sig: tocsin.Signal) -> None:
        """A collected sender takes its connections with it."""
        sender = Sender()
        sig.connect(handler, sender=sender)
        assert sig.connections()
        ref = weakref.ref(sender)
        del sender
        gc.collect()
        assert ref() is None
        assert sig.connections() == []

    def test_signal_does_not_keep_sender_alive(self, sig: tocsin.Signal) -> None:
        """Connecting and sending hold a weakly referenceable sender only weakly."""
        sender = Sender()
        sig.connect(handler, sender=sender)
        sig.send(sender)
        sig.has_listeners(sender)
        sig.receivers_for(sender)
        ref = weakref.ref(sender)
        del sender
        assert ref() is None  # no cycle either: refcounting alone frees it

    def test_dead_class_sender(self, sig: tocsin.Signal) -> None:
        """A class used as sender is collectable and its connections go with it."""

        class Temporary:
            pass

        sig.connect(handler, sender=Temporary)
        sig.send(Temporary)
        ref = weakref.ref(Temporary)
        del Temporary
        gc.collect()
        assert ref() is None
        assert sig.connections() == []


class TestIdReuse:
    """A new object reusing a dead sender's id() must not get its receivers.

    Each test provokes the reuse (tests/_reuse.py) and fails if it cannot.
    """

    @pytest.mark.parametrize("args", [(Sender,), (Model, 1)], ids=["plain", "model"])
    def test_reused_id_gets_nothing(self, sig: tocsin.Signal, args: tuple[Any, ...]) -> None:
        """Django fires stale receivers here; tocsin must not, on send or has_listeners."""
        heap = AddressReuse(*args)
        sender = heap.new()
        sig.connect(handler, sender=sender)
        assert calls(sig, sender) == ["handler"]
        dead_id = id(sender)
        del sender
        gc.collect()
        newcomer = heap.reuse(dead_id)
        assert id(newcomer) == dead_id
        assert calls(sig, newcomer) == []
        assert not sig.has_listeners(newcomer)
        assert sig.receivers_for(newcomer) == []
        assert sig.connections() == []

    def test_reused_id_before_any_send(self, sig: tocsin.Signal) -> None:
        """The same holds when the routing table was never built for the sender."""
        heap = AddressReuse(Sender)
        sender = heap.new()
        sig.connect(handler, sender=sender)
        dead_id = id(sender)
        del sender
        newcomer = heap.reuse(dead_id)
        assert calls(sig, newcomer) == []

    def test_reused_id_then_connect(self, sig: tocsin.Signal) -> None:
        """Connecting the newcomer works and does not revive the old connection."""

        def newcomers(**kwargs: Any) -> str:
            return "new"

        heap = AddressReuse(Sender)
        sender = heap.new()
        sig.connect(handler, sender=sender)
        sig.send(sender)
        dead_id = id(sender)
        del sender
        newcomer = heap.reuse(dead_id)
        sig.connect(newcomers, sender=newcomer)
        assert calls(sig, newcomer) == ["new"]
        assert [c.receiver for c in sig.connections()] == [newcomers]
        # The old receiver is free to connect to the newcomer again.
        sig.connect(handler, sender=newcomer)
        assert calls(sig, newcomer) == ["new", "handler"]

    def test_reused_id_of_any_sender_receiver_unaffected(self, sig: tocsin.Signal) -> None:
        """Any-sender receivers still fire for the newcomer."""

        def anyone(**kwargs: Any) -> str:
            return "any"

        sig.connect(anyone)
        heap = AddressReuse(Sender)
        sender = heap.new()
        sig.connect(handler, sender=sender)
        sig.send(sender)
        dead_id = id(sender)
        del sender
        newcomer = heap.reuse(dead_id)
        assert calls(sig, newcomer) == ["any"]


class TestValueSenders:
    def test_equal_strings_match(self, sig: tocsin.Signal) -> None:
        """Hashable senders without weak references match by equality."""
        connected = "order"
        sig.connect(handler, sender=connected)
        built = "".join(["ord", "er"])  # noqa: FLY002 - equal to "order", not the same object
        assert built == connected
        assert built is not connected
        assert calls(sig, built) == ["handler"]
        assert calls(sig, "other") == []

    def test_equal_tuples_and_ints_match(self, sig: tocsin.Signal) -> None:
        """Equal tuples (and large ints built at run time) are the same sender."""
        big = 10**30
        sig.connect(handler, sender=("app", big))
        assert calls(sig, ("app", int("1" + "0" * 30))) == ["handler"]
        assert calls(sig, ("app", 1)) == []

    def test_type_is_part_of_the_match(self, sig: tocsin.Signal) -> None:
        """1, True and 1.0 are three senders, though equal in Python."""
        results = {}

        def one(**kwargs: Any) -> str:
            return "int"

        def true(**kwargs: Any) -> str:
            return "bool"

        def one_float(**kwargs: Any) -> str:
            return "float"

        sig.connect(one, sender=1)
        sig.connect(true, sender=True)
        sig.connect(one_float, sender=1.0)
        for sender in (1, True, 1.0):
            results[repr(sender)] = calls(sig, sender)
        assert results == {"1": ["int"], "True": ["bool"], "1.0": ["float"]}
        assert calls(sig, 0) == []
        assert calls(sig, False) == []

    @pytest.mark.parametrize(
        ("sender", "twin"),
        [
            ((1,), (True,)),
            ((1, (2,)), (1, (2.0,))),
            (("a", frozenset({1})), ("a", frozenset({True}))),
            (frozenset({1, 2.0}), frozenset({1.0, 2})),
        ],
        ids=repr,
    )
    def test_types_count_inside_tuples_and_frozensets(
        self, sig: tocsin.Signal, sender: object, twin: object
    ) -> None:
        """Equal containers of differently typed items are different senders."""
        assert sender == twin
        sig.connect(handler, sender=sender)
        assert calls(sig, twin) == []
        assert not sig.has_listeners(twin)
        assert sig.disconnect(handler, sender=twin) is False
        assert calls(sig, type(sender)(sender)) == ["handler"]  # type: ignore[call-arg]
        (connection,) = sig.connections()
        assert connection.sender is sender
        assert sig.disconnect(handler, sender=sender) is True

    def test_zero_and_false_differ(self, sig: tocsin.Signal) -> None:
        """0 and False are different senders; neither is "any"."""
        sig.connect(handler, sender=0)
        assert calls(sig, False) == []
        assert calls(sig, 0) == ["handler"]
        assert sig.disconnect(handler, sender=False) is False
        assert sig.disconnect(handler, sender=0) is True

    def test_disconnect_by_equal_value(self, sig: tocsin.Signal) -> None:
        """disconnect() with an equal value sender removes the connection."""
        sig.connect(handler, sender=("a", 1))
        assert sig.disconnect(handler, sender=("a", 1))
        assert calls(sig, ("a", 1)) == []

    def test_slotted_hashable_matches_its_own_equality(self, sig: tocsin.Signal) -> None:
        """A slotted hashable object (default identity equality) matches only itself."""
        slot = Slotted()
        sig.connect(handler, sender=slot)
        assert calls(sig, slot) == ["handler"]
        assert calls(sig, Slotted()) == []


class TestUnhashableSenders:
    @pytest.mark.parametrize(
        "make", [list, dict, set, bytearray, SlottedUnhashable], ids=lambda f: f.__name__
    )
    def test_matched_by_identity(self, sig: tocsin.Signal, make: Any) -> None:
        """Unhashable senders match by identity, even when equal."""
        sender, twin = make(), make()
        assert sender == twin
        sig.connect(handler, sender=sender)
        assert calls(sig, sender) == ["handler"]
        assert calls(sig, twin) == []
        assert sig.has_listeners(sender)
        assert not sig.has_listeners(twin)
        assert sig.disconnect(handler, sender=twin) is False
        assert sig.disconnect(handler, sender=sender) is True
        assert calls(sig, sender) == []

    def test_held_while_connected(self, sig: tocsin.Signal) -> None:
        """A sender that cannot be held weakly is kept alive until disconnected."""
        deaths: list[str] = []
        sender = Noisy(deaths)
        sig.connect(handler, sender=sender)
        sig.connect(handler, sender=sender, dispatch_uid="second")
        sig.send(sender)
        del sender
        gc.collect()
        assert deaths == []
        (first, second) = sig.connections()
        held = first.sender
        del first, second
        assert sig.disconnect(handler, sender=held)
        assert deaths == []  # still used by the second connection
        assert sig.disconnect(dispatch_uid="second", sender=held)
        del held
        gc.collect()
        assert deaths == ["dead"]
        assert sig.connections() == []


class TestOddSenders:
    @pytest.mark.parametrize(
        "sender",
        [
            [],
            {},
            set(),
            Slotted(),
            SlottedUnhashable(),
            BadHash(),
            FailingHash(),
            (1, FailingHash()),
            float("nan"),
            (1, []),
            type,
            None,
        ],
        ids=repr,
    )
    def test_never_raises(self, sig: tocsin.Signal, sender: object) -> None:
        """send, send_robust, has_listeners and receivers_for accept any sender."""
        assert sig.send(sender) == []
        assert not sig.has_listeners(sender)
        sig.connect(handler)
        sig.connect(handler, sender="value")  # forces by-value lookups
        sig.connect(handler, sender=Sender())
        assert calls(sig, sender) == ["handler"]
        assert [r for _, r in sig.send_robust(sender)] == ["handler"]
        assert sig.has_listeners(sender)
        assert sig.receivers_for(sender) == [handler]

    @pytest.mark.parametrize("sender", [[], {}, Slotted(), (1, []), FailingHash()], ids=repr)
    def test_connect_to_odd_sender(self, sig: tocsin.Signal, sender: object) -> None:
        """Odd senders can be connected to and sent from."""
        sig.connect(handler, sender=sender)
        assert calls(sig, sender) == ["handler"]
        assert sig.disconnect(handler, sender=sender)
