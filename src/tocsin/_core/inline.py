"""Inline receivers: which ones a weak reference would lose as ``connect()`` returns.

``connect(receiver, weak=True)`` holds receivers weakly, as Django does, so a
receiver goes when its owner drops it. A receiver that nothing but the call
itself references (``sig.connect(make_handler())``, ``sig.connect(logged(f))``,
``sig.connect(Handler())``, ``sig.connect(Handler().on_save)``) would die at
once and never run: Django's and blinker's classic silent loss. tocsin holds
those strongly instead. The decision must not be fooled by what an object
says about itself (``functools.wraps`` copies ``__qualname__`` and
``__dict__`` from the function it wraps), nor depend on how many frames sit
between the caller and the check (a ``Signal`` subclass whose ``connect``
calls ``super().connect()`` adds some). So:

* Decided by the code object and the type, never by attributes. Lambdas and
  ``functools.partial`` objects are always held strongly. A function whose
  code is not nested (``CO_NESTED`` unset: defined at module level or in a
  module-level class) is its module's or class's, and is held weakly; the
  common receiver is decided by one flag test, on ``connect()``'s fast path.
* A nested function (closures, ``functools.wraps`` wrappers, anything
  defined inside another function) or a callable object is held strongly if
  its reference count shows that only the connect call holds it (a function
  referenced only by its own closure cells counts as unreferenced). The
  count is read once, at the *outermost* ``connect`` entry, where it does not
  depend on the stack: ``Signal.connect`` itself, or the entry wrapper that
  ``Signal.__init_subclass__`` puts around a subclass's own ``connect`` (see
  :func:`entry`). The wrapper records its decision for that receiver object
  in a per-thread stack; inner ``connect`` calls of a ``super()`` chain, and
  any other connect of the same object while the outer one runs, use it.
  With the C accelerator, ``Signal.connect`` is compiled and hands every
  call it does not complete to the Python method with the counts pure Python
  would show there (see ``fast_connect_call`` in ``_speedups_connect.h``).
* A bound method is held strongly if nothing but the method references its
  instance (``sig.connect(Handler().on_save)``). That count involves no
  frame at all, so it is read wherever the method is prepared.
* A decorator (``@receiver(sig)``, ``@sig.connect(...)``) returns the
  function to be bound to a name: it declares the function kept by its
  caller (:func:`kept_by_caller`), so a nested function decorated inside a
  function is weak and goes with that scope, as in Django.

Reference counts are CPython's; the counts a temporary has at each
measuring point are calibrated at import through the real call paths
(``_signal`` calls :func:`calibrate`), since they differ between versions.
Until then, and if calibration fails, nothing counts as temporary (Django's
behaviour). Objects kept alive only by a reference cycle look referenced.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = [
    "CO_NESTED",
    "calibrate",
    "decided",
    "decision",
    "entry",
    "instance_vanishes",
    "is_entry",
    "kept_by_caller",
    "vanishes",
]

_F = TypeVar("_F", bound=Callable[..., Any])

CO_NESTED = inspect.CO_NESTED
_FunctionType = types.FunctionType
_MethodType = types.MethodType
_partial = functools.partial
_getrefcount = sys.getrefcount


class _Decisions(threading.local):
    """Per thread: ``(receiver, temporary)`` decided by the connect calls running."""

    def __init__(self) -> None:
        self.stack: list[tuple[object, bool]] = []


_decisions = _Decisions()

# The reference count of a temporary at each measuring point (see calibrate).
# 0 until calibrated: nothing is temporary.
_AT_PREPARE = 0
_AT_ENTRY = 0
_calibrating: str | None = None


def decided(receiver: object) -> bool | None:
    """The decision an enclosing connect of this thread made for *receiver*, if any."""
    for obj, temporary in reversed(_decisions.stack):
        if obj is receiver:
            return temporary
    return None


def _self_references(func: object) -> int:
    """How many of *func*'s own closure cells reference it (``def h(): ... h ...``)."""
    closure = getattr(func, "__closure__", None) if type(func) is _FunctionType else None
    if not closure:
        return 0
    return sum(1 for cell in closure if _contents(cell) is func)


def _contents(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def vanishes(receiver: object, count: int) -> bool:
    """Whether *receiver*, a nested function or a callable object, is a temporary to hold strongly.

    *count* is ``sys.getrefcount(receiver)`` read by ``_receivers.prepare``
    itself, so that the frames it counts are always the same: those of a
    direct ``Signal.connect()`` call. Through a subclass's ``connect`` the
    entry wrapper has decided already, and that decision wins.
    """
    if _decisions.stack:
        temporary = decided(receiver)
        if temporary is not None:
            return temporary
    if _calibrating is not None:
        _calibrated(count)
        return False
    return _is_temporary(receiver, count - _AT_PREPARE)


def _is_temporary(receiver: object, excess: int) -> bool:
    """*excess*: references beyond a temporary's; its own closure cells don't count."""
    return excess <= 0 or excess <= _self_references(receiver)


def _calibrated(count: int) -> None:
    global _AT_PREPARE, _AT_ENTRY  # noqa: PLW0603 - set once, at import (see calibrate)
    if _calibrating == "prepare":
        _AT_PREPARE = count
    elif _calibrating == "entry":
        _AT_ENTRY = count


def _instance_count(method: Any) -> int:
    return _getrefcount(method.__self__)


class _Probe:
    def method(self) -> None:
        pass


# A temporary instance is referenced by its bound method only; no frame
# holds it, so one measurement here is valid wherever the method goes.
_AT_INSTANCE = _instance_count(_Probe().method)


def instance_vanishes(method: types.MethodType) -> bool:
    """Whether nothing but *method* references its instance (``sig.connect(Foo().on)``)."""
    return _instance_count(method) <= _AT_INSTANCE


@contextlib.contextmanager
def decision(receiver: object, *, temporary: bool) -> Iterator[None]:
    """Make every connect of *receiver* in this thread, in the block, use *temporary*."""
    stack = _decisions.stack
    stack.append((receiver, temporary))
    try:
        yield
    finally:
        stack.pop()


def kept_by_caller(func: object) -> contextlib.AbstractContextManager[None]:
    """For decorators: *func* is returned to be bound to a name, so never a temporary."""
    return decision(func, temporary=False)


def entry(connect: _F) -> _F:
    """Wrap a ``Signal`` subclass's own ``connect`` so it decides at its entry.

    Same call shape (``functools.wraps``); the receiver is the parameter named
    ``receiver`` (by position or keyword), or the first argument. Only nested
    functions and callable objects that no enclosing connect of this thread
    has decided on are counted: module-level functions are their module's,
    lambdas and partials always kept, and a bound method's instance is
    counted in ``prepare`` (see :func:`instance_vanishes`).
    """
    code = connect.__code__
    names = code.co_varnames[1 : code.co_argcount]  # positional parameters after self
    index = names.index("receiver") if "receiver" in names else 0

    @functools.wraps(connect)
    def connect_entry(self: Any, *args: Any, **kwargs: Any) -> Any:
        receiver = args[index] if len(args) > index else kwargs.get("receiver")
        if type(receiver) is _FunctionType:
            code = receiver.__code__
            if not code.co_flags & CO_NESTED or code.co_name == "<lambda>":
                return connect(self, *args, **kwargs)
        elif receiver is None or type(receiver) is _MethodType or isinstance(receiver, _partial):
            return connect(self, *args, **kwargs)
        stack = _decisions.stack
        if stack and decided(receiver) is not None:  # an enclosing connect decided
            return connect(self, *args, **kwargs)
        count = _getrefcount(receiver)  # args (or kwargs) and the local above hold it here
        if _calibrating == "entry":
            _calibrated(count)
            temporary = False
        else:
            temporary = _is_temporary(receiver, count - _AT_ENTRY)
        stack.append((receiver, temporary))
        try:
            return connect(self, *args, **kwargs)
        finally:
            stack.pop()

    connect_entry.__tocsin_entry__ = True  # type: ignore[attr-defined]
    return connect_entry  # type: ignore[return-value]


def is_entry(func: object) -> bool:
    """Whether *func* is already an :func:`entry` wrapper."""
    return getattr(func, "__tocsin_entry__", False) is True


def calibrate(through_signal: Callable[[], object], through_subclass: Callable[[], object]) -> None:
    """Measure a temporary's count in ``prepare`` and in an entry wrapper.

    *through_signal* must connect an inline closure with ``Signal.connect``,
    *through_subclass* one through a subclass whose ``connect`` forwards to
    ``super().connect()``. Afterwards both must be above 0 or nothing is
    temporary.
    """
    global _calibrating, _AT_PREPARE, _AT_ENTRY  # noqa: PLW0603 - set once at import
    try:
        _calibrating = "prepare"
        through_signal()
        _calibrating = "entry"
        through_subclass()
    finally:
        _calibrating = None
    if not (_AT_PREPARE > 0 and _AT_ENTRY > 0):
        _AT_PREPARE = _AT_ENTRY = 0
