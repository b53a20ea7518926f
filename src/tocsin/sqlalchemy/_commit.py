"""``on_commit`` for SQLAlchemy sessions: Django's algorithm on Session events.

Django's semantics (``django.db.transaction.on_commit``), per Session:

* A callback registered while the Session is in a transaction runs after
  its *outermost* transaction commits, in registration order. It is dropped
  if that transaction rolls back or the Session is closed without commit.
* Each callback remembers the SAVEPOINTs (``begin_nested()``) open when it
  was registered. Rolling one back drops exactly the callbacks that
  remember it; releasing one keeps them, tied to the enclosing transaction.
* With no transaction open, the callback runs at once.
* ``robust=False`` (default): an exception propagates out of ``commit()``
  and the callbacks after it are dropped (the commit itself is done).
  ``robust=True``: the exception is logged on logger ``tocsin`` and the
  next callback runs.

How it maps onto SQLAlchemy (why each event):

* ``after_commit`` fires for the root transaction *and* for each released
  SAVEPOINT, and inside it the Session cannot emit SQL. It only marks the
  root commit (no SAVEPOINT open means the root is committing).
* ``after_transaction_end`` for the root transaction (``parent is None``)
  runs the callbacks. By then the Session has left the transaction and
  returned its connection, so a callback may use the same Session (it
  begins a new transaction) or a new one.
* ``after_soft_rollback`` drops callbacks. A failed flush reports only its
  internal sub-transaction, while SQLAlchemy rolls back the enclosing
  SAVEPOINT or root, so we walk up to the first ancestor that is a
  SAVEPOINT or the root. Transactions are stored as objects, not ``id()``s,
  which are reused after garbage collection.
* ``AsyncSession`` runs the sync Session inside a greenlet; awaitables a
  callback returns are awaited there with SQLAlchemy's ``await_``, before
  ``await session.commit()`` returns.

The listeners are installed on the ``Session`` class on first use, so a
program that never calls ``on_commit`` pays nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.exc import UnmappedInstanceError
from sqlalchemy.util import concurrency

from tocsin._core.delivery import DeferredCall
from tocsin._core.receivers import error_text, log_name, qualified_name
from tocsin.exceptions import DispatchError, InvalidArgumentError


def in_greenlet() -> bool:
    """Whether this code runs inside an AsyncSession's greenlet (SQLAlchemy's ``greenlet_spawn``).

    Without greenlet imported there is no such greenlet, and asking SQLAlchemy
    would raise ImportError: SQLAlchemy 2.1 installs greenlet only with its
    ``asyncio`` extra, and plain sync Sessions must work without it.
    """
    return sys.modules.get("greenlet") is not None and bool(concurrency.in_greenlet())


if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.orm import SessionTransaction

    from tocsin._core.signal import Signal

__all__ = [
    "SessionNotFoundError",
    "capture_on_commit_callbacks",
    "on_commit",
    "send_on_commit",
    "session_in_use",
    "use_session",
]

logger = logging.getLogger("tocsin")

_KEY = "tocsin.on_commit"
_current_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "tocsin_current_session", default=None
)
_captures: contextvars.ContextVar[tuple[_Capture, ...]] = contextvars.ContextVar(
    "tocsin_on_commit_captures", default=()
)
_install_lock = threading.Lock()
_installed = False

try:  # SQLAlchemy 2.1 names it await_; 2.0 only has await_only
    from sqlalchemy.util import await_ as _await
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util import await_only as _await


class SessionNotFoundError(DispatchError, LookupError):
    """``on_commit()`` could not tell which Session the callback belongs to.

    .. versionadded:: 0.1

    """


class _Pending:
    """The callbacks of one Session's current transaction."""

    __slots__ = ("callbacks", "committed")

    def __init__(self) -> None:
        # (SAVEPOINTs open at registration, callback, robust)
        self.callbacks: list[tuple[tuple[SessionTransaction, ...], Callable[[], Any], bool]] = []
        self.committed = False


class _Capture:
    __slots__ = ("callbacks", "robust", "session")

    def __init__(self, session: Session | None) -> None:
        self.session = session
        self.callbacks: list[Callable[[], Any]] = []
        self.robust: list[bool] = []


def _unwrap(session: Any) -> Session:
    """Return the sync Session behind a Session, AsyncSession or scoped proxy."""
    if not isinstance(session, Session) and hasattr(session, "registry"):
        session = session()  # scoped_session / async_scoped_session
    session = getattr(session, "sync_session", session)  # AsyncSession
    if not isinstance(session, Session):
        msg = (
            f"session= must be a SQLAlchemy Session, AsyncSession or scoped_session; "
            f"got {session!r} ({type(session).__name__})."
        )
        raise InvalidArgumentError(msg)
    return session


def _session_of(instance: object) -> Session | None:
    try:
        return object_session(instance)
    except UnmappedInstanceError:
        return None


def session_in_use(instance: object = None) -> Session | None:
    """The Session a deferred receiver's ``on_commit`` would use, or None.

    The Session of *instance* (an ORM instance attached to one), else the
    one set by :func:`use_session`. For integrations that defer work to a
    Session's transaction (``tocsin.background``); never raises.
    """
    if instance is not None and (found := _session_of(instance)) is not None:
        return found
    return _current_session.get()


def _find_session(session: Any, func: Callable[..., Any], instance: object) -> Session:
    if session is not None:
        return _unwrap(session)
    if instance is not None and (found := _session_of(instance)) is not None:
        return found
    current = _current_session.get()
    if current is not None:
        return current
    msg = (
        f"on_commit() cannot tell which Session {qualified_name(func)} belongs to. Pass "
        "session=..., send an ORM instance attached to a Session as instance=..., or "
        "register inside `with tocsin.sqlalchemy.use_session(session):`."
    )
    raise SessionNotFoundError(msg)


def _install() -> None:
    global _installed  # noqa: PLW0603 - one-time, lock-guarded installation
    with _install_lock:
        if _installed:
            return
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_soft_rollback)
        event.listen(Session, "after_transaction_end", _after_transaction_end)
        _installed = True


def _after_commit(session: Session) -> None:
    state: _Pending | None = session.info.get(_KEY)
    if state is not None and not session.in_nested_transaction():
        state.committed = True


def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    state: _Pending | None = session.info.get(_KEY)
    if state is None or not state.callbacks:
        return
    boundary = previous_transaction
    while boundary.parent is not None and not boundary.nested:
        boundary = boundary.parent
    if boundary.parent is None:
        state.callbacks = []
    else:
        state.callbacks = [entry for entry in state.callbacks if boundary not in entry[0]]


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    state: _Pending | None = session.info.pop(_KEY, None)
    if state is None or not state.committed:
        return
    # Popped first: callbacks may use this Session and register new ones.
    # Under `with session.begin():` the context manager is still exiting and
    # refuses any use of the Session, even the reload of an attribute the
    # commit expired; step it aside while the callbacks run, as if it had
    # exited (private, but stable since SQLAlchemy 1.4; tested).
    context = session._trans_context_manager  # noqa: SLF001
    if context is transaction:
        session._trans_context_manager = None  # noqa: SLF001
    try:
        for _savepoints, func, robust in state.callbacks:
            _run(func, robust=robust, during_transaction=True)
    finally:
        if context is transaction:
            session._trans_context_manager = context  # noqa: SLF001


def _call(func: Callable[[], Any]) -> Any:
    result = func()
    if inspect.isawaitable(result):
        if in_greenlet():
            return _await(result)
        if inspect.iscoroutine(result):
            result.close()
        msg = (
            f"on_commit() callback {qualified_name(_name_target(func))} returned an awaitable, which can "
            "only be awaited after an AsyncSession commit (await session.commit()); here "
            "it would never run. Use an AsyncSession or a synchronous callback."
        )
        raise InvalidArgumentError(msg)
    return result


def _run(func: Callable[[], Any], *, robust: bool, during_transaction: bool = False) -> None:
    if not robust:
        _call(func)
        return
    try:
        _call(func)
    except Exception as exc:  # noqa: BLE001 - the robust contract
        _log_failure(func, exc, during_transaction=during_transaction)


def _log_failure(func: Callable[[], Any], exc: Exception, *, during_transaction: bool) -> None:
    # Django's messages (run_and_clear_commit_hooks after a commit, on_commit
    # with no transaction open, captureOnCommitCallbacks), naming the function
    # by its __qualname__: the receiver of a deferred receiver call, the
    # function inside a functools.partial.
    target = _name_target(func)
    where = "on_commit() during transaction" if during_transaction else "on_commit()"
    logger.error("Error calling %s in %s (%s).", log_name(target), where, error_text(exc), exc_info=exc)


def _name_target(func: Callable[[], Any]) -> Callable[..., Any]:
    return func.receiver if isinstance(func, DeferredCall) else func


def on_commit(func: Callable[[], Any], *, session: Any = None, robust: bool = False) -> None:
    """Run *func* after the Session's outermost transaction commits.

    Django's ``transaction.on_commit`` for SQLAlchemy (see the module
    docstring for the exact savepoint and error semantics). Usable as a
    delivery policy: ``@receiver(post_save, sender=Order, via=on_commit)``;
    for robust delivery pass ``via=functools.partial(on_commit, robust=True)``.

    Which Session: *session* if given (a ``Session``, ``AsyncSession`` or
    scoped proxy); else, for a receiver deferred ``via=on_commit``, the
    Session of the ``instance=`` the signal sent; else the Session set by
    :func:`use_session`. Otherwise :class:`SessionNotFoundError` is raised.

    If that Session is not in a transaction (``Session.in_transaction()``),
    *func* runs at once. Note that ``Session.add()`` alone begins one
    (autobegin). An awaitable returned by *func* is awaited when the Session is an
    ``AsyncSession``'s (``async def`` callbacks), and is an error otherwise.

    Args:
        func: a callable taking no arguments.
        session: the Session whose transaction to wait for.
        robust: log an exception raised by *func* (logger ``tocsin``)
            instead of propagating it out of ``commit()``.

    Raises:
        SessionNotFoundError: no Session could be found.
        TypeError: *func* is not callable, or *session* is not a Session.

    .. versionadded:: 0.1

    """
    _check_callable(func)
    captures = _captures.get()
    if captures and captures[-1].session is None:
        _record(captures[-1], func, robust)
        return
    instance = func.kwargs.get("instance") if isinstance(func, DeferredCall) else None
    sess = _find_session(session, _name_target(func), instance)
    for capture in reversed(captures):
        if capture.session is sess:
            _record(capture, func, robust)
            return
    if not sess.in_transaction():
        _run(func, robust=robust)
        return
    _install()
    savepoints = []
    transaction = sess.get_nested_transaction()
    while transaction is not None:
        if transaction.nested:
            savepoints.append(transaction)
        transaction = transaction.parent
    state: _Pending | None = sess.info.get(_KEY)
    if state is None:
        state = sess.info[_KEY] = _Pending()
    state.callbacks.append((tuple(savepoints), func, robust))


def _check_callable(func: object) -> None:
    if not callable(func):
        msg = f"on_commit() needs a callable taking no arguments; got {func!r}."
        raise InvalidArgumentError(msg)


def _record(capture: _Capture, func: Callable[[], Any], robust: bool) -> None:  # noqa: FBT001
    capture.callbacks.append(func)
    capture.robust.append(robust)


class _SendLater:
    """``signal.send(sender, **named)`` as a zero-argument callable."""

    __slots__ = ("named", "robust", "sender", "signal")

    def __init__(self, signal: Signal, sender: Any, named: dict[str, Any], *, robust: bool) -> None:
        self.signal = signal
        self.sender = sender
        self.named = named
        self.robust = robust

    def __call__(self) -> list[tuple[Any, Any]]:
        sig = self.signal
        if in_greenlet():  # under AsyncSession: async receivers can be awaited here
            sending = sig.asend_robust if self.robust else sig.asend
            return _await(sending(self.sender, **self.named))
        return (sig.send_robust if self.robust else sig.send)(self.sender, **self.named)

    def __repr__(self) -> str:
        how = "send_robust" if self.robust else "send"
        return f"<{how} of {self.signal!r} sender={self.sender!r} after commit>"


def send_on_commit(signal: Signal, sender: Any, session: Any = None, /, **named: Any) -> None:
    """Send *signal* after the Session's outermost transaction commits.

    The whole send is deferred: receivers connected later but before the
    commit are called, and a rollback drops the send. Session lookup and
    savepoint handling are those of :func:`on_commit`. Under an
    ``AsyncSession`` the send is ``await signal.asend(...)``, so async
    receivers work. A receiver's exception propagates out of ``commit()``,
    as ``send()``'s would; see :func:`send_robust_on_commit`.

    Args:
        signal: the signal to send.
        sender: passed to ``send()``.
        session: the Session whose transaction to wait for, positional only;
            without it, ``instance=`` among *named* identifies the Session,
            then :func:`use_session`, as for ``on_commit``.
        named: the send's named arguments, all of them: positional-only
            parameters reserve no name, so a signal may send ``session=``,
            ``robust=`` or ``using=`` like any other argument.

    Raises:
        SessionNotFoundError: no Session could be found.

    .. versionadded:: 0.1

    """
    _send_on_commit(signal, sender, session, named, robust=False)


def send_robust_on_commit(signal: Signal, sender: Any, session: Any = None, /, **named: Any) -> None:
    """Like :func:`send_on_commit`, with ``send_robust()``: errors are logged, never raised.

    A receiver's exception is logged on logger ``tocsin`` and never raised
    out of ``commit()``; the other receivers still run.

    .. versionadded:: 0.1

    """
    _send_on_commit(signal, sender, session, named, robust=True)


def _send_on_commit(
    signal: Signal, sender: Any, session: Any, named: dict[str, Any], *, robust: bool
) -> None:
    later = _SendLater(signal, sender, named, robust=robust)
    captures = _captures.get()
    if captures and captures[-1].session is None:
        _record(captures[-1], later, robust)
        return
    if session is None:
        instance = named.get("instance")
        session = _find_session(None, later, instance)
    on_commit(later, session=session, robust=robust)


@contextlib.contextmanager
def use_session(session: Any) -> Iterator[Session]:
    """Make *session* the one ``on_commit(session=None)`` uses, in this context.

    A ``contextvars`` context manager: it covers the current thread or task
    and what they call, and nests. Explicit ``session=`` and a deferred
    receiver's ``instance=`` take precedence.

    .. versionadded:: 0.1

    """
    token = _current_session.set(_unwrap(session))
    try:
        yield _current_session.get()  # type: ignore[misc]
    finally:
        _current_session.reset(token)


@contextlib.contextmanager
def capture_on_commit_callbacks(
    session: Any = None, *, execute: bool = False
) -> Iterator[list[Callable[[], Any]]]:
    """Capture ``on_commit`` callbacks instead of scheduling them. For tests.

    Django's ``TestCase.captureOnCommitCallbacks``: tests wrapped in a
    transaction that is rolled back never commit, so callbacks never run.
    Inside this block, callbacks registered for *session* (any Session if
    ``None``) are appended to the yielded list and not scheduled, whatever
    the transaction state. With ``execute=True`` they are called in order
    when the block exits without an exception; callbacks they register are
    captured and called too. ``robust=True`` callbacks log their errors.
    Captured callbacks are not dropped by a rollback.

    Not thread-safe across threads: capture applies to the current context.

    .. versionadded:: 0.1

    """
    capture = _Capture(None if session is None else _unwrap(session))
    token = _captures.set((*_captures.get(), capture))
    try:
        yield capture.callbacks
        if execute:
            index = 0
            while index < len(capture.callbacks):
                _run(capture.callbacks[index], robust=capture.robust[index])
                index += 1
    finally:
        _captures.reset(token)
