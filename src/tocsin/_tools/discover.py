"""Registration at startup: ``autodiscover()``, Django's ``autodiscover_modules`` for any program.

Receivers connect when the module defining them is imported, so a program
must import those modules once at startup. Django does it in
``AppConfig.ready()``; elsewhere :func:`autodiscover` imports the
``signals`` and ``receivers`` submodules of the packages it is given, and
(with ``entry_points=True``) the modules that installed distributions list
under the ``tocsin.receivers`` entry-point group.

Contracts, as in Django's ``autodiscover_modules``/``module_has_submodule``:

* A submodule that does not exist is skipped; an ``ImportError`` raised
  *inside* an existing submodule (a typo in its own imports) propagates
  unchanged: a missing module is decided by looking for it
  (``importlib.util.find_spec``), never by catching errors of the import.
* Calling it twice is harmless: Python imports a module once, so its
  ``@receiver`` lines run once (Django's docs warn that ``ready()`` may run
  more than once). A module whose import failed is not in ``sys.modules``
  and is tried again by the next call.
* An entry point naming a callable (``module:function``) is called once per
  process, with no arguments, after its module is imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
import types
from collections.abc import Iterable

from tocsin.exceptions import InvalidArgumentError

__all__ = ["ENTRY_POINT_GROUP", "autodiscover"]

ENTRY_POINT_GROUP = "tocsin.receivers"
DEFAULT_MODULES = ("signals", "receivers")

# Entry points naming a callable that were called already: (group, name, value).
_called: set[tuple[str, str, str]] = set()
_called_lock = threading.Lock()


def autodiscover(
    *packages: str | types.ModuleType,
    modules: Iterable[str] = DEFAULT_MODULES,
    entry_points: bool | str = False,
) -> list[str]:
    """Import the receiver modules of *packages*, and of installed plugins; return their names.

    For each package (a dotted name or the module object), in order, import
    it and then each of its submodules named in *modules* that exists
    (``myapp.signals``, then ``myapp.receivers`` by default). A plain module
    (not a package) is imported and has no submodules to look for. With
    *entry_points* (``True`` for the ``tocsin.receivers`` group, or a
    group's name), also load every entry point of that group that installed
    distributions declare, in the order ``importlib.metadata`` lists them::

        # pyproject.toml of a plugin
        [project.entry-points."tocsin.receivers"]
        myplugin = "myplugin.receivers"

    An entry point naming a module imports it; one naming an attribute
    (``myplugin.receivers:setup``) imports its module and, if the attribute
    is callable, calls it once per process with no arguments.

    Call it once at startup (the FastAPI lifespan, Flask's app factory, a
    ``main()``), before the first send. It is idempotent: a second call
    imports nothing again and calls no entry point again.

    Args:
        packages: packages whose receiver submodules to import.
        modules: submodule names to look for in each package; dotted
            names (``"signals.handlers"``) reach deeper.
        entry_points: also load the entry points of ``tocsin.receivers``
            (``True``) or of the group named.

    Returns:
        The names of the modules imported (or found imported already), each
        once, in order; an entry point naming a callable appears as its
        ``module:attribute`` value.

    Raises:
        ModuleNotFoundError: a package given in *packages* does not exist.
        InvalidArgumentError: *modules* is a single string, or a package
            or module name is not a string.
        Exception: whatever importing an existing module, or loading or
            calling an entry point, raises propagates unchanged (on Python
            3.11+ with a note naming the entry point).

    .. versionadded:: 0.1
    """
    names = _submodule_names(modules)
    group = _group(entry_points)
    imported: list[str] = []
    for package in packages:
        module = _package(package)
        _add(imported, module.__name__)
        if not hasattr(module, "__path__"):  # a plain module: nothing beneath it
            continue
        for name in names:
            found = _import_if_present(f"{module.__name__}.{name}")
            if found is not None:
                _add(imported, found)
    if group is not None:
        for loaded in _load_entry_points(group):
            _add(imported, loaded)
    return imported


def _add(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)


def _submodule_names(modules: object) -> tuple[str, ...]:
    if isinstance(modules, str) or not isinstance(modules, Iterable):
        msg = (
            f"autodiscover(modules=...) takes an iterable of submodule names such as "
            f"('signals', 'receivers'); got {modules!r}. For one name write modules=({modules!r},)."
        )
        raise InvalidArgumentError(msg)
    names = tuple(modules)
    for name in names:
        if not isinstance(name, str) or not name or name.startswith("."):
            msg = (
                f"autodiscover(modules=...) takes submodule names relative to each package, such as "
                f"'signals'; got {name!r} in {modules!r}."
            )
            raise InvalidArgumentError(msg)
    return names


def _group(entry_points: object) -> str | None:
    if entry_points is True:
        return ENTRY_POINT_GROUP
    if entry_points is False or entry_points is None:
        return None
    if isinstance(entry_points, str) and entry_points:
        return entry_points
    msg = (
        f"autodiscover(entry_points=...) takes True (the {ENTRY_POINT_GROUP!r} group), False, "
        f"or the name of an entry-point group; got {entry_points!r}."
    )
    raise InvalidArgumentError(msg)


def _package(package: object) -> types.ModuleType:
    if isinstance(package, types.ModuleType):
        return package
    if not isinstance(package, str) or not package:
        msg = (
            f"autodiscover() takes packages as dotted names ('myapp') or module objects; "
            f"got {package!r} of type {type(package).__qualname__}."
        )
        raise InvalidArgumentError(msg)
    return importlib.import_module(package)


def _import_if_present(name: str) -> str | None:
    """Import *name* if it exists; ``None`` if it (or a package on the way) does not.

    Existence is decided with ``find_spec``, which imports the parents but
    never runs the module itself: an ``ImportError`` raised while the module
    runs is the module's own and propagates.
    """
    parts = name.split(".")
    # The given package is imported already; check each level below it, so a
    # missing intermediate package ("signals" of "signals.handlers") is a skip.
    for depth in range(2, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        if prefix in sys.modules:
            continue
        parent = sys.modules.get(".".join(parts[: depth - 1]))
        if parent is not None and not hasattr(parent, "__path__"):
            return None  # the parent is a plain module: it has no submodules
        if importlib.util.find_spec(prefix) is None:
            return None
        importlib.import_module(prefix)
    return name


def _load_entry_points(group: str) -> list[str]:
    loaded: list[str] = []
    for entry_point in importlib.metadata.entry_points(group=group):
        try:
            obj = entry_point.load()
            if not isinstance(obj, types.ModuleType) and callable(obj):
                key = (group, entry_point.name, entry_point.value)
                with _called_lock:
                    first = key not in _called
                    _called.add(key)
                if first:
                    try:
                        obj()
                    except BaseException:
                        with _called_lock:  # failed: the next call tries again
                            _called.discard(key)
                        raise
        except Exception as exc:
            if hasattr(exc, "add_note"):  # Python 3.11+
                dist = entry_point.dist.name if entry_point.dist is not None else "an unknown distribution"
                exc.add_note(
                    f"while loading entry point {entry_point.name} = {entry_point.value!r} "
                    f"(group {group!r}) of {dist}"
                )
            raise
        loaded.append(entry_point.value)
    return loaded
