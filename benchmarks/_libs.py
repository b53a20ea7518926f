"""Adapters giving every signal library the same small interface.

Each adapter knows how to make a signal, connect and disconnect a receiver
(optionally for one sender), and which statement sends. Call conventions are
each library's own and idiomatic:

* tocsin and django.dispatch: ``sig.send(sender, value=1)``; receivers get
  ``receiver(signal=sig, sender=sender, value=1)``.
* blinker: ``sig.send(sender, value=1)``; receivers get ``receiver(sender, value=1)``.
* psygnal: ``sig.emit(sender, 1)`` on a ``SignalInstance((object, int))``;
  receivers get ``receiver(sender, 1)``. psygnal has no sender filter.
  ``psygnal-fast`` (send rows only): ``sig.emit_fast(sender, 1)``, which skips
  emit()'s argument checks and re-emission handling.
* PyDispatcher: ``dispatcher.send(signal=sig, sender=sender, value=1)``.

Every receiver in the benchmark is written ``def r(sender, *args, **kwargs)``
so the same function object works with all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Receiver = Callable[..., Any]


@dataclass
class Lib:
    """One library under test."""

    name: str
    make: Callable[[], Any]
    connect: Callable[[Any, Receiver, Any], None]
    disconnect: Callable[[Any, Receiver, Any], None]
    #: statement sending from ``sender`` on ``sig`` (names bound in ``ns``)
    send_stmt: str
    #: statement connecting then disconnecting ``rcv`` on ``sig``
    cycle_stmt: str
    ns: dict[str, Any] = field(default_factory=dict)
    filters_senders: bool = True
    #: the same for ``rcv`` connected for the sender ``snd`` only (None: no sender filter)
    cycle_sender_stmt: str | None = None
    #: only in the rows whose name starts with this (None: every row)
    rows: str | None = None


def _tocsin() -> Lib:
    import tocsin

    return Lib(
        name="tocsin",
        make=tocsin.Signal,
        connect=lambda sig, r, sender: sig.connect(r, sender=sender),
        disconnect=lambda sig, r, sender: sig.disconnect(r, sender=sender),
        send_stmt="sig.send(sender, value=1)",
        cycle_stmt="sig.connect(rcv); sig.disconnect(rcv)",
        cycle_sender_stmt="sig.connect(rcv, sender=snd); sig.disconnect(rcv, sender=snd)",
    )


def _django(*, caching: bool) -> Lib:
    from django.dispatch import Signal

    return Lib(
        name="django-cached" if caching else "django",
        make=lambda: Signal(use_caching=caching),
        connect=lambda sig, r, sender: sig.connect(r, sender=sender),
        disconnect=lambda sig, r, sender: sig.disconnect(r, sender=sender),
        send_stmt="sig.send(sender, value=1)",
        cycle_stmt="sig.connect(rcv); sig.disconnect(rcv)",
        cycle_sender_stmt="sig.connect(rcv, sender=snd); sig.disconnect(rcv, sender=snd)",
    )


def _blinker() -> Lib:
    import blinker

    any_sender = blinker.ANY

    def connect(sig: Any, r: Receiver, sender: Any) -> None:
        sig.connect(r, sender=any_sender if sender is None else sender)

    def disconnect(sig: Any, r: Receiver, sender: Any) -> None:
        sig.disconnect(r, sender=any_sender if sender is None else sender)

    return Lib(
        name="blinker",
        make=blinker.Signal,
        connect=connect,
        disconnect=disconnect,
        send_stmt="sig.send(sender, value=1)",
        cycle_stmt="sig.connect(rcv); sig.disconnect(rcv)",
        cycle_sender_stmt="sig.connect(rcv, sender=snd); sig.disconnect(rcv, sender=snd)",
    )


def _psygnal(*, fast: bool = False) -> Lib:
    import psygnal

    def connect(sig: Any, r: Receiver, sender: Any) -> None:
        if sender is not None:
            msg = "psygnal has no sender filter"
            raise TypeError(msg)
        sig.connect(r)

    return Lib(
        name="psygnal-fast" if fast else "psygnal",
        make=lambda: psygnal.SignalInstance((object, int)),
        connect=connect,
        disconnect=lambda sig, r, sender: sig.disconnect(r),
        send_stmt="sig.emit_fast(sender, 1)" if fast else "sig.emit(sender, 1)",
        cycle_stmt="sig.connect(rcv); sig.disconnect(rcv)",
        filters_senders=False,
        rows="send, " if fast else None,
    )


def _pydispatcher() -> Lib:
    from pydispatch import dispatcher

    counter = itertools.count()
    any_sender = dispatcher.Any

    def connect(sig: Any, r: Receiver, sender: Any) -> None:
        dispatcher.connect(r, signal=sig, sender=any_sender if sender is None else sender)

    def disconnect(sig: Any, r: Receiver, sender: Any) -> None:
        dispatcher.disconnect(r, signal=sig, sender=any_sender if sender is None else sender)

    return Lib(
        name="pydispatcher",
        make=lambda: f"signal-{next(counter)}",
        connect=connect,
        disconnect=disconnect,
        send_stmt="send(signal=sig, sender=sender, value=1)",
        cycle_stmt="connect(rcv, signal=sig); disconnect(rcv, signal=sig)",
        cycle_sender_stmt="connect(rcv, signal=sig, sender=snd); disconnect(rcv, signal=sig, sender=snd)",
        ns={"send": dispatcher.send, "connect": dispatcher.connect, "disconnect": dispatcher.disconnect},
    )


def all_libs() -> list[Lib]:
    """The libraries compared, tocsin first."""
    return [
        _tocsin(),
        _django(caching=False),
        _django(caching=True),
        _blinker(),
        _psygnal(),
        _psygnal(fast=True),
        _pydispatcher(),
    ]


def direct(receivers: list[Receiver], s: object, x: object, **kw: Any) -> None:
    """The baseline: the loop every dispatcher is a wrapper around."""
    for r in receivers:
        r(signal=s, sender=x, **kw)
