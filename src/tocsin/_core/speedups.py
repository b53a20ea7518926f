"""The optional C accelerator: the hot paths of ``Signal`` compiled.

``_speedups.c`` (with the parts it includes, ``_speedups_*.h``) implements
only the fast loops of ``Signal.send`` and ``Signal.send_robust`` (a send
over a published plan, see ``plans``), and the
inlined common paths of ``Signal.connect`` and ``Signal.disconnect`` (a plain
module-level function with every option at its default, for any sender or a
sender matched by identity). Sends call receivers by vectorcall with a
cached keyword-names tuple, so no keyword dict is built per send or per
receiver call; the state they use sits in the signal's ``__slots__``. A
compiled connect or disconnect that would run no Python code under the
signal's lock, and finds it free, makes its change without taking it (atomic
under the GIL; see ``lock_free_section`` in ``_speedups_section.h``). Every
other case (no sender, ``signal=`` among the named arguments, interceptors,
pause, local scopes, async receivers, ``via=`` policies, senders keyed by
value, a stale table, other receivers or options) calls the pure-Python
method it replaces, with the same arguments, before doing anything: one set
of semantics, whichever is active.

The compiled methods are used when all of these hold, else the pure-Python
ones, silently:

* the extension was built (``pip install`` compiles it when a C compiler is
  available, and skips it otherwise; see ``setup.py``);
* the interpreter is CPython with the GIL (free-threaded builds and other
  interpreters run pure Python until they are supported);
* ``TOCSIN_NO_EXTENSIONS`` is unset or empty (the aio-libs convention: any
  non-empty value forces pure Python, read once at import).

``tocsin.__speedups__`` says which is active.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import threading
import weakref
from typing import TYPE_CHECKING

from . import hooks as _hooks
from .plans import _DEFAULT, _EMPTY_ROUTES, _MISSING, _STALE_TABLE
from .records import SenderRef, attach, detach, find_anchor

if TYPE_CHECKING:
    from types import ModuleType

    from .signal import Signal

__all__ = ["ACTIVE", "install"]

ACTIVE = False  # set by install(): whether the compiled send()/send_robust() are in use


def wanted() -> bool:
    """Whether this process may use the compiled methods (see the module docstring)."""
    if os.environ.get("TOCSIN_NO_EXTENSIONS"):
        return False
    if sys.implementation.name != "cpython":
        return False
    # A free-threaded build (3.13t): the C loop relies on the GIL.
    return not sysconfig.get_config_var("Py_GIL_DISABLED")


def _load() -> ModuleType | None:
    if not wanted():
        return None
    try:
        from . import _speedups  # noqa: PLC0415 - optional, and only when wanted
    except ImportError:  # not built (no compiler), or built for another interpreter
        return None
    return _speedups


def install(signal_class: type[Signal], keywords_only: object, no_priority: int) -> bool:
    """Compile *signal_class*'s hot paths, if possible (see the module docstring).

    Replaces ``send``, ``send_robust``, ``connect`` and ``disconnect``: each
    compiled method keeps the pure-Python one as ``__wrapped__`` (with its
    name, docstring and signature) and calls it, with the same arguments,
    for every case it does not handle. Returns whether it did (False in pure
    Python). *keywords_only* and *no_priority* are connect()'s placeholder
    and default priority, compared by identity. Call it before
    ``_inline.calibrate``: the reference counts of a connect call are
    measured through the compiled ``connect``.
    """
    global ACTIVE  # noqa: PLW0603 - set once, at import
    speedups = _load()
    if speedups is None:
        return False
    speedups.setup(
        signal_class,
        _EMPTY_ROUTES,
        _DEFAULT,
        _MISSING,
        _STALE_TABLE,
        SenderRef,
        attach,
        detach,
        _hooks,
        weakref.getweakrefcount,
        find_anchor,
        keywords_only,
        no_priority,
        type(threading.Lock()),
    )
    for kind, name in enumerate(("send", "send_robust", "connect", "disconnect")):
        method = signal_class.__dict__[name]
        compiled = functools.update_wrapper(speedups.make_method(method, kind), method)
        setattr(signal_class, name, compiled)
    ACTIVE = True
    return True
