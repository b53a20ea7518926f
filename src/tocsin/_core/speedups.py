"""The optional C accelerator: ``send()`` and ``send_robust()`` compiled.

``_speedups.c`` implements only the fast loops of ``Signal.send`` and
``Signal.send_robust`` (a send over a published plan, see ``plans``): it calls
receivers by vectorcall with a cached keyword-names tuple, so no keyword dict
is built per send or per receiver call. Every other case (no sender,
``signal=`` among the named arguments, interceptors, pause, local scopes,
async receivers, ``via=`` policies, senders keyed by value, a stale table)
calls the pure-Python method it replaces, with the same arguments, before
any receiver runs: one set of semantics, whichever is active.

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
from typing import TYPE_CHECKING

from .plans import _DEFAULT, _EMPTY_ROUTES, _MISSING

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


def install(signal_class: type[Signal]) -> bool:
    """Replace *signal_class*'s ``send`` and ``send_robust`` with the compiled ones, if possible.

    Each compiled method keeps the pure-Python one as ``__wrapped__`` (with
    its name, docstring and signature) and calls it for every case its loop
    does not handle. Returns whether they were installed.
    """
    global ACTIVE  # noqa: PLW0603 - set once, at import
    speedups = _load()
    if speedups is None:
        return False
    speedups.setup(signal_class, _EMPTY_ROUTES, _DEFAULT, _MISSING)
    for name, robust in (("send", False), ("send_robust", True)):
        method = signal_class.__dict__[name]
        compiled = functools.update_wrapper(speedups.make_send(method, robust), method)
        setattr(signal_class, name, compiled)
    ACTIVE = True
    return True
