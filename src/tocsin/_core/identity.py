"""A signal's identity: the module that constructed it, and pickling by reference.

A signal is an identity, like a function or a class: it remembers the module
constructing it (for ``all_signals()``, the ``tocsin`` command and pickling)
and pickles as a reference to the module-level name bound to it.
"""

from __future__ import annotations

import pkgutil
import sys
import warnings
from typing import TYPE_CHECKING

from tocsin.exceptions import NotPicklableError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType

    from .signal import Signal

__all__ = ["defining_module", "reduce_signal", "skip_frames_of", "warn_providing_args"]

_factory_codes: set[CodeType] = set()  # frames skipped when finding a signal's module


def skip_frames_of(code: CodeType) -> None:
    """Make :func:`defining_module` look past frames running *code* (factories)."""
    _factory_codes.add(code)


def defining_module() -> str | None:
    """Return the module constructing the signal being initialised.

    Called from ``Signal.__init__``; looks past ``__init__`` frames (of
    subclasses calling ``super().__init__``) and registered factories such as
    ``Namespace.signal``. ``None`` where frames are not available.
    """
    getframe = getattr(sys, "_getframe", None)
    if getframe is None:  # pragma: no cover - every CPython and PyPy has it
        return None
    frame = getframe(2)
    while frame is not None and (frame.f_code.co_name == "__init__" or frame.f_code in _factory_codes):
        frame = frame.f_back
    if frame is None:  # pragma: no cover - only a bare Signal() at the stack's root
        return None
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else None


def reduce_signal(signal: Signal) -> tuple[Callable[[str], object], tuple[str]]:
    """What pickle stores for *signal*: a reference to the module attribute bound to it.

    A signal is an identity, like a function or a class, so it is pickled the
    way they are: by the name its module binds it to (in the module that
    constructed it), and unpickled as the object that name holds, with its
    receivers. That holds across processes too, since the name is looked up
    again. ``pkgutil.resolve_name`` does the lookup: a stable public name to
    store in pickles.

    Raises:
        TypeError: no name in that module is bound to the signal (a signal
            created inside a function, or kept on an instance).
    """
    module = sys.modules.get(signal.module) if signal.module else None
    if module is not None:
        for attr, value in list(vars(module).items()):
            if value is signal:
                return pkgutil.resolve_name, (f"{signal.module}:{attr}",)
    where = f"module {signal.module}" if signal.module else "the module that created it"
    msg = (
        f"cannot pickle {signal!r}: signals are pickled by reference, like functions and "
        f"classes, and no name in {where} is bound to this one. Bind it at module level "
        f"(order_placed = Signal()), or leave it out of what you pickle (define __getstate__) "
        f"and create or look it up again after loading."
    )
    raise NotPicklableError(msg)


def warn_providing_args() -> None:
    """Warn about Django's removed ``Signal(providing_args=...)``."""
    msg = (
        "Signal(providing_args=...) is deprecated and ignored: Django removed it in 4.0. "
        "Describe the arguments with doc= instead, or declare them with tocsin.TypedSignal "
        "so type checkers check every send()."
    )
    # 1: here, 2: Signal.__init__, 3: the code constructing the signal.
    warnings.warn(msg, DeprecationWarning, stacklevel=3)
