"""The slow half of sending: interceptors, delivery policies, async receivers.

``Signal.send``'s fast loop handles plain tuple plans; everything else comes
here (see ``_plans``). ``asend``/``asend_robust`` start here too and hand
over to ``_async`` (asyncio) or ``_async_trio``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from functools import partial
from types import MethodType
from typing import TYPE_CHECKING, Any, cast

from tocsin.exceptions import SendArgumentsError

from . import async_asyncio as _async
from . import hooks as _hooks
from . import receivers as _receivers
from .delivery import Deferred, DeferredCall
from .errors import call_handler
from .plans import _MISSING, _STALE_TABLE, _routes_for, _SlowPlan, _table_of
from .records import Record, is_async, on_error_of, resolve, via_of
from .routing import Routing

if TYPE_CHECKING:
    from .signal import Signal

__all__ = ["Dispatching"]

logger = logging.getLogger("tocsin")


class Dispatching(Routing):
    """Interceptors, the slow delivery path and async sending; ``Signal`` builds on it."""

    name: str | None

    def _log_failure(self, receiver: object, exc: Exception, method: str = "send_robust") -> None:
        """Log a receiver's failure as Django does; *method* names the robust send called.

        Django's message exactly (``Error calling <qualname> in
        Signal.send_robust() (<error>)``, on logger ``tocsin``, with the
        traceback); the signal and the receiver object ride along as the
        record's ``signal`` and ``receiver`` attributes, for formatters and
        structured logging.
        """
        logger.error(
            "Error calling %s in Signal.%s() (%s)",
            _receivers.log_name(receiver),
            method,
            _receivers.error_text(exc),  # str() now: an exception's __str__ may raise
            exc_info=exc,
            extra={"signal": self, "receiver": receiver},
        )

    def _check_send_arguments(
        self, sender: object, signal: object, named: dict[str, Any], method: str
    ) -> None:
        """Refuse a send without a sender or with ``signal=``; *method* is the one called."""
        called = f"{type(self).__name__}.{method}()"
        if sender is _MISSING:
            example = f"{'await ' if method.startswith('a') else ''}sig.{method}(sender=Order, order=order)"
            msg = (
                f"{called} needs a sender: the object (often a class) that is sending. "
                f"Pass it first, for example {example}, or None for no particular sender."
            )
            raise SendArgumentsError(msg)
        if signal is not _MISSING:
            msg = (
                f"{called} got signal={signal!r} among its named arguments, but the "
                "signal passes itself to receivers as signal=. Rename that argument."
            )
            raise SendArgumentsError(msg)
        del named

    def add_interceptor(
        self, interceptor: _hooks.Interceptor, *, outermost: bool = False
    ) -> Callable[[], None]:
        """Install *interceptor* on this signal; return a function removing it.

        Interceptors see every send of this signal (see ``tocsin._hooks``);
        the testing, mute, pause and tracing tools are built on them. While
        none is installed, sending costs nothing extra. They run in the
        order installed, after the global ones; ``outermost=True`` puts this
        one before the signal's others (``capture()`` sees sends that a
        ``TypedSignal``'s validator refuses).
        """
        with self._locked():
            own = self._own_interceptors
            self._own_interceptors = (interceptor, *own) if outermost else (*own, interceptor)
        self._refresh_interceptors()

        def remove() -> None:
            with self._locked():
                self._own_interceptors = tuple(i for i in self._own_interceptors if i is not interceptor)
            self._refresh_interceptors()

        return remove

    def _refresh_interceptors(self) -> None:
        with self._locked():
            self._interceptors = _hooks.global_interceptors() + self._own_interceptors
            routes = self._routes
            if routes is not _STALE_TABLE:
                self._publish(_routes_for(_table_of(routes), intercepted=bool(self._interceptors)))

    def _send_slow(
        self,
        sender: Any,
        signal: Any,
        named: dict[str, Any],
        *,
        robust: bool,
    ) -> list[tuple[Any, Any]]:
        self._check_send_arguments(sender, signal, named, "send_robust" if robust else "send")
        interceptors = self._interceptors
        if interceptors:
            dispatch = _hooks.Dispatch(cast("Signal", self), sender, named, robust=robust, is_async=False)
            return self._intercepted(interceptors, 0, dispatch)
        return self._deliver(sender, named, robust=robust)

    def _intercepted(
        self, interceptors: tuple[_hooks.Interceptor, ...], index: int, dispatch: _hooks.Dispatch
    ) -> list[tuple[Any, Any]]:
        if index == len(interceptors):
            return self._deliver(dispatch.sender, dispatch.kwargs, robust=dispatch.robust)
        return interceptors[index].send(
            dispatch, lambda: self._intercepted(interceptors, index + 1, dispatch)
        )

    def _deliver(self, sender: Any, named: dict[str, Any], *, robust: bool) -> list[tuple[Any, Any]]:
        """Run the receivers for *sender*, bypassing interceptors."""
        plan = self._plan_for(sender)
        responses: list[tuple[Any, Any]] = []
        if not isinstance(plan, _SlowPlan):
            # Resolve each weak receiver in its turn, never all up front: one
            # collected while an earlier receiver runs must be skipped.
            for deref, func, _ in plan:  # a record (see records)
                obj = deref()
                if obj is not None:
                    receiver = obj if func is None else MethodType(func, obj)
                    del obj
                    response = self._call_entry(receiver, None, sender, named, robust=robust)
                    responses.append((receiver, response))
            return responses
        signal = cast("Signal", self)
        if plan.async_records:
            # Async receivers from sync code (see _async): refused before the
            # first receiver runs, so a refusal leaves nothing half-sent.
            _async.check_no_running_loop(signal, resolve(plan.async_records[0]))
        pending_async: list[tuple[Any, Record]] = []
        sequential = self.async_mode == "sequential"
        for record in plan.entries:
            receiver = resolve(record)
            if receiver is None:
                continue
            if is_async(record) and via_of(record) is None:
                pending_async.append((receiver, record))
                if sequential:
                    responses += _async.run_async_receivers(
                        signal, pending_async, sender, named, robust=robust
                    )
                    pending_async = []
                continue
            responses.append((receiver, self._call_entry(receiver, record, sender, named, robust=robust)))
        if pending_async:
            responses += _async.run_async_receivers(signal, pending_async, sender, named, robust=robust)
        return responses

    def _call_entry(
        self,
        receiver: Any,
        record: Record | None,
        sender: Any,
        named: dict[str, Any],
        *,
        robust: bool,
        method: str = "send_robust",
    ) -> Any:
        """Call one non-async entry as send_robust or send would (*method*: the one logged).

        A failure first goes to the connection's ``on_error`` handler, if any
        (see ``errors``); then it propagates, or (robust) is logged and returned.
        """
        try:
            if record is None:
                call = partial(receiver, signal=self, sender=sender, **named)
            else:
                call = partial(self._call_one, record, receiver, sender, named)
            observer = _hooks.receiver_observer  # tracing, see _observe
            return call() if observer is None else observer.call(cast("Signal", self), receiver, call)
        except Exception as exc:
            if record is not None:
                held = on_error_of(record)
                if held is not None:
                    call_handler(held, exc, self, receiver, sender, named, method, robust=robust)
            if not robust:
                raise
            self._log_failure(receiver, exc, method)
            return exc

    def asend(self, sender: Any = _MISSING, **named: Any) -> Coroutine[Any, Any, list[tuple[Any, Any]]]:
        """Send from async code; await sync and async receivers alike.

        ``await sig.asend(sender, **named)``. Sync receivers run in a worker
        thread, one after another, so they never block the event loop; async
        receivers run concurrently (or everything runs in order with
        ``async_mode="sequential"``). Works under asyncio and trio. The result
        lists sync receivers first, then async ones. The first exception
        propagates unchanged after the other receivers were stopped (see
        docs/async.md for failures and cancellation).

        This is a plain method returning the coroutine to await, one frame
        fewer per send; bad arguments raise when it is called, before any
        coroutine exists.

        Raises:
            SendArgumentsError: no sender was given, or ``signal=`` was
                passed among the named arguments.
        """
        if sender is _MISSING or "signal" in named or self._interceptors:
            return self._asend(sender, named, robust=False)
        return _async.start(self, sender, named)  # type: ignore[arg-type] # a Signal

    def asend_robust(
        self, sender: Any = _MISSING, **named: Any
    ) -> Coroutine[Any, Any, list[tuple[Any, Any]]]:
        """Like :meth:`asend`, but exceptions become responses and are logged.

        Never raises for a receiver; cancellation still propagates.
        """
        return self._asend(sender, named, robust=True)

    def _asend(
        self, sender: Any, named: dict[str, Any], *, robust: bool
    ) -> Coroutine[Any, Any, list[tuple[Any, Any]]]:
        self._check_send_arguments(
            sender, named.pop("signal", _MISSING), named, "asend_robust" if robust else "asend"
        )
        interceptors = self._interceptors
        if not interceptors:
            return _async.asend(cast("Signal", self), sender, named, robust=robust)
        dispatch = _hooks.Dispatch(cast("Signal", self), sender, named, robust=robust, is_async=True)

        async def proceed(index: int) -> list[tuple[Any, Any]]:
            if index == len(interceptors):
                return await _async.asend(
                    cast("Signal", self), dispatch.sender, dispatch.kwargs, robust=dispatch.robust
                )
            return await interceptors[index].asend(dispatch, lambda: proceed(index + 1))

        return proceed(0)

    def _call_one(self, record: Record, receiver: Any, sender: Any, named: dict[str, Any]) -> Any:
        via = via_of(record)
        if via is not None:
            call = DeferredCall(receiver, self, sender, named)
            observer = _hooks.receiver_observer
            if observer is not None:
                call._origin = observer.origin()  # noqa: SLF001 - same package
            return Deferred(call, via(call))
        return receiver(signal=self, sender=sender, **named)
