"""Routing plans and tables: the data ``Signal.send`` reads without a lock.

A routing table maps a sender key (see ``senders``) to a *plan*: a tuple of
connection records (see ``records``; shared with ``Signal._records``, not
copied), already merged with the any-sender receivers and sorted by priority
then connection order, which ``send()``'s fast loop runs; or a
:class:`_SlowPlan` for everything that loop cannot do (a stale table,
senders keyed by value, a missing sender, interceptors, delivery policies,
async receivers). A table is never mutated once published, except to drop a
dead sender's key.
"""

from __future__ import annotations

import inspect
import operator
import weakref
from collections.abc import Hashable
from contextvars import ContextVar
from types import FunctionType, MethodType
from typing import Any, Final

from tocsin.exceptions import InvalidArgumentError

from . import senders as _senders
from .records import Record, is_async, is_plain, on_error_of, priority_of, scope_of, via_of

__all__: list[str] = []


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

    __slots__ = ("async_records", "entries", "handled", "kind", "scoped", "sync_records", "via_records")

    def __init__(self, kind: str, entries: tuple[Record, ...] = ()) -> None:
        self.kind = kind
        self.entries = entries
        # asend's groups, computed once per plan rather than once per send.
        self.via_records = tuple(r for r in entries if via_of(r) is not None)
        self.async_records = tuple(r for r in entries if via_of(r) is None and is_async(r))
        self.sync_records = tuple(r for r in entries if via_of(r) is None and not is_async(r))
        self.scoped = any(scope_of(r) is not None for r in entries)
        self.handled = any(on_error_of(r) is not None for r in entries)  # see errors

    def in_context(self) -> _SlowPlan:
        """Return the plan without the local connections whose scope is not active here."""
        active = active_scopes.get()
        entries = tuple(r for r in self.entries if scope_of(r) is None or scope_of(r) in active)
        return _SlowPlan(self.kind, entries)


_STALE: Final = _SlowPlan("stale")  # the table must be rebuilt
_BY_VALUE: Final = _SlowPlan("by-value")  # look the sender up by value
_NO_SENDER: Final = _SlowPlan("no-sender")  # send() without a sender: an error
_INTERCEPTED: Final = _SlowPlan("intercepted")  # interceptors are installed
_STALE_TABLE: Final[dict[Hashable, Any]] = {_DEFAULT: _STALE}
_TABLE: Final = "table"  # in the routes published while intercepting: the table (see _routes_for)
# Published instead of a table without any receiver: send() returns at once.
_EMPTY_ROUTES: Final[dict[Hashable, Any]] = {_DEFAULT: (), id(_MISSING): _NO_SENDER}


def _routes_for(table: dict[Hashable, Any], *, intercepted: bool) -> dict[Hashable, Any]:
    """The routes ``send()`` reads for *table*, stored in ``Signal._routes``.

    While interceptors are installed, routes sending every sender to the slow
    path, which finds *table* in them (see :func:`_table_of`). Otherwise the
    table itself, or the shared empty routes when it has no receiver. One
    attribute holds both, so ``connect()`` invalidates with one store.
    """
    if intercepted:
        return {_DEFAULT: _INTERCEPTED, _TABLE: table}  # str keys: never a sender's
    return _published(table)


def _table_of(routes: dict[Hashable, Any]) -> dict[Hashable, Any]:
    """The routing table behind published *routes* (``_STALE_TABLE`` if stale)."""
    table: dict[Hashable, Any] = routes.get(_TABLE, routes)
    return table


def _published(table: dict[Hashable, Any]) -> dict[Hashable, Any]:
    """The routes send() reads for *table* while no interceptor is installed."""
    # A table always holds the any-sender, default and missing-sender slots.
    if len(table) == 3 and table[_DEFAULT] == ():  # noqa: PLR2004
        return _EMPTY_ROUTES
    return table


Plan = Any  # tuple of records, or a _SlowPlan


def _sort_key(entry: tuple[int, Record]) -> tuple[int, int]:
    position, record = entry
    return (-priority_of(record), position)


def _make_plan(entries: list[tuple[int, Record]]) -> Plan:
    """Build the plan of *entries*, ``(position in Signal._records, record)`` pairs."""
    # Connection order is the order of Signal._records (a record is never
    # re-inserted), so records carry no sequence number: one int less each.
    entries.sort(key=_sort_key)
    records = tuple([record for _, record in entries])
    if all(map(is_plain, records)):
        return records  # the records themselves: a plan copies nothing
    return _SlowPlan("full", records)


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
