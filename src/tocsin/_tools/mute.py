"""Muting: silence whole signals or single receivers, process-wide.

A muted connection stays connected; it is only left out of the routing
tables: ``_depths`` maps each signal with something muted to its mute keys
and their depths (how many open ``mute()`` blocks hold each), and the signal
gets a connection filter (``hooks.set_connection_filter``) leaving those
connections out when it rebuilds its table. So a mute costs nothing on the
send path, and every change invalidates the table, so nothing stale
survives a block.

The keys:

* :data:`ALL`: the whole signal, including receivers connected while the
  block is open.
* ``("receiver", key)``: one receiver (by ``_receivers.receiver_key``) on
  this signal, whatever its sender or ``dispatch_uid``.

Example::

    >>> import tocsin
    >>> from tocsin.testing import mute
    >>> sig = tocsin.Signal(name="demo")
    >>> def handler(sender, **kwargs): return "ran"
    >>> _ = sig.connect(handler)
    >>> with mute(sig):
    ...     sig.send(None)
    []
    >>> [r for _, r in sig.send(None)]
    ['ran']
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from tocsin._core import hooks
from tocsin._core import receivers as _receivers
from tocsin._core.signal import Signal
from tocsin.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    import unittest
    from types import TracebackType


__all__ = ["ALL", "mute"]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")
_NOTHING: Any = object()


class _All:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<all receivers>"


ALL: Final[Hashable] = _All()

# One lock for every mute change: entering and leaving are rare, and one lock
# makes "mute these three signals" atomic with respect to other mute blocks.
_lock = threading.Lock()
# signal -> {mute key: depth}, for the signals with something muted.
_depths: weakref.WeakKeyDictionary[Signal, dict[Hashable, int]] = weakref.WeakKeyDictionary()


def _skip_all(record: object) -> bool:
    del record
    return True


def _skip_muted(muted: dict[Hashable, int]) -> hooks.ConnectionFilter:
    """The connection filter leaving out what *muted* (a frozen snapshot) silences."""
    if ALL in muted:
        return _skip_all

    def skip(record: Any) -> bool:
        return ("receiver", _receivers.identity_of(record)) in muted

    return skip


class mute:  # noqa: N801 - used like a function, as contextlib's helpers are
    """Silence signals or single receivers while a block runs.

    ``mute(post_save)`` silences every receiver of ``post_save``, including
    ones connected inside the block; ``mute(handler)`` silences one receiver
    on every signal it is connected to. Use it as a context manager or as a
    decorator:

    * on a function (plain, ``async def`` or generator): each call runs
      muted (a generator, while it is iterated);
    * on a ``unittest.TestCase`` subclass (Django's ``TestCase`` too): the
      whole class runs muted, from ``setUpClass`` (so ``setUpTestData``) to
      its class cleanups, as Django's ``override_settings`` does for its
      test cases; subclasses inherit it;
    * on any other class with ``test*`` methods (pytest-style test classes):
      each ``test*`` method, inherited ones included, runs muted; fixtures
      and other methods do not.

    Contract:
        * Global: a mute applies to every thread and every asyncio task
          while the block is open, like the connection it silences. It is
          meant for tests and bulk jobs; for per-request behaviour use
          ``Signal.connected_to(receiver, local=True)`` or connect receivers
          with a sender instead.
        * Nests: each target counts its open blocks; leaving an inner block
          does not unmute what an outer block muted.
        * Nothing is disconnected: order, priorities and receivers connected
          or disconnected meanwhile are exactly as if no mute had happened.
        * Zero cost: the muted receivers are left out of the routing table,
          which is rebuilt on entry and exit. A muted send still reaches
          ``capture()`` and other interceptors, with no receivers run.
        * Muting a receiver covers the signals alive when the block starts.

    Args:
        *targets: signals and receivers (functions, bound methods, callable
            objects) to silence.

    Raises:
        TypeError: no target was given, a target is neither a signal nor
            callable, or a target is a test class (a bare ``@mute`` above
            it); as a decorator, on a class with no ``test*`` method or on
            an async generator function.

    .. versionadded:: 0.1

    """

    def __init__(self, *targets: Signal | Callable[..., Any]) -> None:
        if not targets:
            msg = (
                "mute() needs the signals or receivers to silence, for example mute(post_save) or "
                "@mute(post_save, send_welcome_email); it got none."
            )
            raise InvalidArgumentError(msg)
        keys: list[tuple[Signal | None, Hashable]] = []
        for target in cast("tuple[object, ...]", targets):  # checked at run time too
            if isinstance(target, Signal):
                keys.append((target, ALL))
            elif isinstance(target, type) and _is_test_class(target):
                # Never a receiver: a bare @mute above a test class, whose
                # tests would vanish once the class became a mute object.
                msg = (
                    f"mute() got the test class {target.__qualname__} as a signal or receiver to "
                    "silence: a bare `@mute` above a class takes the class itself. Write "
                    "`@mute(post_save)` with the signals or receivers to silence."
                )
                raise InvalidArgumentError(msg)
            elif callable(target):
                keys.append((None, ("receiver", _receivers.receiver_key(target))))
            else:
                msg = (
                    f"mute() takes signals and receivers; got {target!r}. "
                    "For example: mute(post_save) or mute(send_welcome_email)."
                )
                raise InvalidArgumentError(msg)
        self._keys = keys
        self._targets = targets
        self._entered: list[list[tuple[Signal, Hashable]]] = []

    def __repr__(self) -> str:
        names = (t if isinstance(t, Signal) else _receivers.qualified_name(t) for t in self._targets)
        return f"<mute {', '.join(map(str, names))}>"

    def __enter__(self) -> mute:  # noqa: PYI034 - final in practice
        applied: list[tuple[Signal, Hashable]] = []
        with _lock:
            every: list[Signal] | None = None
            for signal, key in self._keys:
                if signal is not None:
                    applied.append((signal, key))
                    continue
                if every is None:
                    every = hooks.live_signals()
                applied.extend((sig, key) for sig in every)
            for signal, key in applied:
                _change(signal, key, +1)
        self._entered.append(applied)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        applied = self._entered.pop()
        with _lock:
            for signal, key in applied:
                _change(signal, key, -1)

    def __call__(self, target: _F = _NOTHING, /, *args: object, **kwargs: object) -> _F:
        """Decorate a function or a class (see the class docstring) so that it runs muted."""
        # Any other call is a mistake (a bare @mute, most likely): explain it
        # rather than let Python report a missing argument.
        if target is _NOTHING or args or kwargs or not callable(target):
            given = () if target is _NOTHING else (target, *args)
            raise InvalidArgumentError(self._not_a_decoration(given, kwargs))
        if isinstance(target, type):
            return self._decorate_class(target)  # type: ignore[return-value] # the class itself
        return _muted_function(self, target)

    def _not_a_decoration(self, args: tuple[object, ...], kwargs: dict[str, object]) -> str:
        call = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        msg = (
            f"{self!r} was called with ({call}); used as a decorator, mute(...) takes the one "
            "function or class to decorate."
        )
        (first, *rest) = self._targets
        name = getattr(first, "__name__", None)
        if not rest and name is not None and not isinstance(first, type) and callable(first):
            msg += (
                f" If this is a bare `@mute` above `def {name}`, it replaced {name} with a mute "
                f"object that silences {name}: write `@mute(post_save)` with the signals or "
                "receivers to silence."
            )
        return msg

    def _decorate_class(self, cls: type[_T]) -> type[_T]:
        if _is_test_case(cls):
            _mute_test_case(self, cls)  # type: ignore[arg-type] # a TestCase subclass
            return cls
        names = _test_method_names(cls)
        if not names:
            msg = (
                "@mute(...) decorates functions, unittest.TestCase subclasses and test classes with "
                f"test* methods; {cls.__qualname__} is a class with no test* methods. To silence "
                "signals while it is used, wrap the code that uses it in `with mute(...):`."
            )
            raise InvalidArgumentError(msg)
        for name in names:
            attr = inspect.getattr_static(cls, name)
            if isinstance(attr, (staticmethod, classmethod)):
                wrapped: Any = type(attr)(_muted_function(self, attr.__func__))
            else:
                wrapped = _muted_function(self, attr)
            setattr(cls, name, wrapped)
        return cls


def _fresh(source: mute) -> mute:
    """A new block like *source*: each decorated call enters its own, so calls may overlap."""
    block = mute.__new__(mute)
    block._keys = source._keys  # noqa: SLF001 - same module
    block._targets = source._targets  # noqa: SLF001
    block._entered = []  # noqa: SLF001
    return block


def _muted_function(source: mute, func: _F) -> _F:
    if inspect.isasyncgenfunction(func):
        # A wrapper cannot hold the block across the generator's awaits and
        # forward asend()/athrow() faithfully; refusing beats muting nothing.
        msg = (
            f"@mute(...) cannot decorate the async generator function {func.__qualname__}; "
            "use `with mute(...):` inside it instead."
        )
        raise InvalidArgumentError(msg)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _fresh(source):
                return await func(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(func):
        # Muted while iterated (yield from forwards send/throw/close), not
        # only while the generator object is created.
        @functools.wraps(func)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _fresh(source):
                return (yield from func(*args, **kwargs))

        return generator_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _fresh(source):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _mute_test_case(source: mute, cls: type[unittest.TestCase]) -> None:
    """Mute *cls* from its setUpClass to its class cleanups, as Django's test cases apply settings.

    Class-wide rather than per test (Django's TestContextDecorator wraps
    setUp) so that class fixtures (setUpClass, Django's setUpTestData) run
    muted too: creating fixtures without their signals is the common reason
    to mute a test class. A class cleanup, not tearDownClass, undoes it: it
    runs even when setUpClass fails, and after the class's own cleanups.
    """
    own = cls.__dict__.get("setUpClass")

    def set_up_class(klass: type[unittest.TestCase]) -> None:
        block = _fresh(source)
        block.__enter__()
        klass.addClassCleanup(block.__exit__, None, None, None)
        if own is not None:
            own.__get__(None, klass)()
        else:
            super(cls, klass).setUpClass()  # type: ignore[misc] # cls is the class being decorated

    set_up_class.__qualname__ = f"{cls.__qualname__}.setUpClass"
    cls.setUpClass = classmethod(set_up_class)  # type: ignore[assignment, method-assign]


def _test_method_names(cls: type) -> list[str]:
    """The names of *cls*'s test methods (``test*``, inherited too), as unittest and pytest find them."""
    names = []
    for name in dir(cls):
        if name.startswith("test"):
            attr = inspect.getattr_static(cls, name)
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            if inspect.isfunction(attr):
                names.append(name)
    return names


def _is_test_case(cls: type) -> bool:
    # Not imported for this check: no class derives from TestCase before
    # something imported unittest, and tocsin's import stays lighter.
    module = sys.modules.get("unittest")
    return module is not None and issubclass(cls, module.TestCase)


def _is_test_class(cls: type) -> bool:
    """A unittest test case, or a class pytest would collect (``Test*`` with ``test*`` methods)."""
    return _is_test_case(cls) or (cls.__name__.startswith("Test") and bool(_test_method_names(cls)))


def _change(signal: Signal, key: Hashable, delta: int) -> None:
    """Add *delta* to the depth of *key* on *signal*. Under ``_lock``."""
    muted = dict(_depths.get(signal, {}))
    depth = muted.get(key, 0) + delta
    if depth > 0:
        muted[key] = depth
    else:
        muted.pop(key, None)
    if muted:
        _depths[signal] = muted
    else:
        _depths.pop(signal, None)
    # A new filter over a frozen copy: the signal may be rebuilding its table
    # with the previous one in another thread.
    hooks.set_connection_filter(signal, _skip_muted(muted) if muted else None)
