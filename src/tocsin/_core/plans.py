"""Routing plans and tables: the data ``Signal.send`` reads without a lock.

A routing table maps a sender key (see ``_senders``) to a *plan*: a tuple of
``(deref, func)`` pairs (see ``_receivers``), already merged with the
any-sender receivers and sorted by priority then connection order, which
``send()``'s fast loop runs; or a :class:`_SlowPlan` for everything that loop
cannot do (a stale table, senders keyed by value, a missing sender,
interceptors, delivery policies, async receivers). A table is never mutated
once published, except to drop a dead sender's key.
"""

from __future__ import annotations

import inspect
import operator
import weakref
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from types import FunctionType, MethodType
from typing import Any, Final

from tocsin.exceptions import InvalidArgumentError

from . import senders as _senders
from .records import (
    R_ASYNC,
    R_DEREF,
    R_FUNC,
    R_PRIORITY,
    R_SCOPE,
    R_VIA,
    Record,
)

__all__ = ["connection_key"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()
_DEFAULT: Final = "default"  # routing-table slot of senders with no own entry
_ANY_KEY: Final = _senders.ANY_KEY
_MethodType: Final = MethodType
_FunctionType: Final = FunctionType
_CO_VARKEYWORDS: Final = inspect.CO_VARKEYWORDS
_KWARGS_OR_ASYNC: Final = inspect.CO_VARKEYWORDS | inspect.CO_COROUTINE
_weakref: Final = weakref.ref


# The scopes of the connected_to(local=True) blocks open in this context: a
# local connection is called only by sends made where its scope is active
# (the block's own thread or task, and the tasks started inside it).
active_scopes: ContextVar[frozenset[object]] = ContextVar("tocsin_scopes", default=frozenset())


class _SlowPlan:
    """A plan the fast loop cannot run; ``_send_slow`` handles it."""

    __slots__ = ("async_records", "entries", "kind", "scoped", "sync_records", "via_records")

    def __init__(self, kind: str, entries: tuple[Record, ...] = ()) -> None:
        self.kind = kind
        self.entries = entries
        # asend's groups, computed once per plan rather than once per send.
        self.via_records = tuple(r for r in entries if r[R_VIA] is not None)
        self.async_records = tuple(r for r in entries if r[R_VIA] is None and r[R_ASYNC])
        self.sync_records = tuple(r for r in entries if r[R_VIA] is None and not r[R_ASYNC])
        self.scoped = any(r[R_SCOPE] is not None for r in entries)

    def in_context(self) -> _SlowPlan:
        """Return the plan without the local connections whose scope is not active here."""
        active = active_scopes.get()
        entries = tuple(r for r in self.entries if r[R_SCOPE] is None or r[R_SCOPE] in active)
        return _SlowPlan(self.kind, entries)


_STALE: Final = _SlowPlan("stale")  # the table must be rebuilt
_BY_VALUE: Final = _SlowPlan("by-value")  # look the sender up by value
_NO_SENDER: Final = _SlowPlan("no-sender")  # send() without a sender: an error
_INTERCEPTED: Final = _SlowPlan("intercepted")  # interceptors are installed
_STALE_TABLE: Final[dict[Hashable, Any]] = {_DEFAULT: _STALE}
_INTERCEPT_TABLE: Final[dict[Hashable, Any]] = {_DEFAULT: _INTERCEPTED}
# Published instead of a table without any receiver: send() returns at once.
_EMPTY_ROUTES: Final[dict[Hashable, Any]] = {_DEFAULT: (), id(_MISSING): _NO_SENDER}


def connection_key(rkey: Hashable, skey: Hashable) -> Hashable:
    """The key of a connection in ``Signal._records``.

    ``(receiver key, sender key)``, except for connections to any sender,
    the most common: the receiver key alone when it is an ``id()`` (no tuple
    to allocate, 56 bytes less per connection), else ``(receiver key,)``.
    Ints, 1-tuples and 2-tuples never compare equal, so keys stay distinct.
    """
    if skey == _ANY_KEY:
        return rkey if rkey.__class__ is int else (rkey,)
    return (rkey, skey)


def _published(table: dict[Hashable, Any]) -> dict[Hashable, Any]:
    """The routes send() reads for *table* while no interceptor is installed."""
    # A table always holds the any-sender, default and missing-sender slots.
    if len(table) == 3 and table[_DEFAULT] == ():  # noqa: PLR2004
        return _EMPTY_ROUTES
    return table


Plan = Any  # tuple of (deref, func) pairs, or a _SlowPlan


def _sort_key(entry: tuple[int, Record]) -> tuple[int, int]:
    position, record = entry
    return (-record[R_PRIORITY], position)


def _make_plan(entries: list[tuple[int, Record]]) -> Plan:
    """Build the plan of *entries*, ``(position in Signal._records, record)`` pairs."""
    # Connection order is the order of Signal._records (a record is never
    # re-inserted), so records carry no sequence number: one int less each.
    entries.sort(key=_sort_key)
    records = [record for _, record in entries]
    if any(r[R_VIA] is not None or r[R_ASYNC] or r[R_SCOPE] is not None for r in records):
        return _SlowPlan("full", tuple(records))
    return tuple((r[R_DEREF], r[R_FUNC]) for r in records)


def _bad_via(via: object) -> InvalidArgumentError:
    """The error for a ``via=`` that is not a delivery policy."""
    return InvalidArgumentError(
        f"via= must be a delivery policy: a callable taking one zero-argument callable "
        f"(for example executor.submit or tocsin.sqlalchemy.on_commit); got {via!r}."
    )


def _check_priority(priority: object) -> int:
    """Return *priority* as an int, or raise before it is stored.

    A priority that does not sort would make every later send of the signal
    fail while building its routing table, not the connect() that caused it.
    """
    try:
        return operator.index(priority)  # type: ignore[arg-type]
    except TypeError:
        msg = f"priority must be an int (higher runs first); got {priority!r}."
        raise InvalidArgumentError(msg) from None


def _bind(obj: Any, func: Callable[..., Any]) -> Any:
    return None if obj is None else MethodType(func, obj)


def _resolve(record: Record) -> Any:
    obj = record[R_DEREF]()
    if obj is None or record[R_FUNC] is None:
        return obj
    return MethodType(record[R_FUNC], obj)
