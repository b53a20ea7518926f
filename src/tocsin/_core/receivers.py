"""How a signal holds, identifies, checks and describes its receivers.

A connected receiver is stored as a pair ``(deref, func)``:

* ``deref()`` returns the receiver, or ``None`` once a weakly held receiver
  has been collected. For a strong reference it is a C-level callable that
  returns the object (cheaper than a Python closure on the send path).
* ``func`` is ``None``, except for weakly held bound methods: then ``deref``
  returns the instance and the receiver is ``MethodType(func, instance)``.
  A bound method object is created anew on every attribute access, so it
  cannot itself be referenced weakly (the same reason ``weakref.WeakMethod``
  exists).
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import linecache
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from tocsin.exceptions import DuplicateReceiverWarning, ReceiverNotCallableError, ReceiverSignatureError

from . import inline as _inline
from .records import Record, receiver_function, resolve

__all__ = [
    "Deref",
    "describe",
    "error_text",
    "is_async_receiver",
    "log_name",
    "prepare",
    "qualified_name",
    "receiver_key",
    "reference",
    "validate_receiver",
]

Deref = Callable[[], Any]

_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS
_CO_COROUTINE = inspect.CO_COROUTINE
_CO_NESTED = inspect.CO_NESTED
_FunctionType = types.FunctionType
_MethodType = types.MethodType
_weakref = weakref.ref
_getrefcount = sys.getrefcount

# Python 3.12 moved the "is a coroutine function" marker to inspect; asgiref
# (used by Django) sets its own attribute. Either marks a sync-looking
# callable as one that returns an awaitable.
_ASGIREF_MARKER = "_is_coroutine"


def receiver_key(receiver: object) -> object:
    """Return the identity of *receiver* used for duplicate detection.

    Bound methods are identified by ``(id(instance), id(function))`` because
    each attribute access creates a new method object. Everything else by
    ``id()``; the connection keeps the object (or a weak reference whose death
    removes the connection), so the id cannot be reused while it is in use.
    """
    if type(receiver) is _MethodType:
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


def _strong(obj: object) -> Deref:
    # itertools.repeat(obj).__next__ is a C callable returning obj: about as
    # cheap to call as a weakref, so strong and weak entries share one loop.
    return itertools.repeat(obj).__next__


def reference(
    receiver: Callable[..., Any],
    weak: bool,  # noqa: FBT001 - mirrors Django's positional connect() argument
    callback: Callable[[weakref.ref[Any]], None],
) -> tuple[Deref, Callable[..., Any] | None, bool]:
    """Build the ``(deref, func)`` pair for *receiver* and say if it is weak.

    With ``weak=True`` functions, bound methods and callable objects are held
    weakly and *callback* runs when they die; receivers that cannot be held
    weakly (builtins, objects without ``__weakref__``) are held strongly
    instead. Whether a receiver would vanish as soon as ``connect()``
    returns is decided before, by :func:`prepare` (see ``_inline``).
    """
    if weak:
        if type(receiver) is _MethodType:
            try:
                return weakref.ref(receiver.__self__, callback), receiver.__func__, True
            except TypeError:
                pass
        else:
            try:
                return weakref.ref(receiver, callback), None, True
            except TypeError:
                pass
    return _strong(receiver), None, False


def prepare(
    receiver: Callable[..., Any],
    weak: bool,  # noqa: FBT001 - mirrors Django's positional connect() argument
    callback: Callable[[weakref.ref[Any]], None],
) -> tuple[object, Deref, Callable[..., Any] | None, bool, bool]:
    """Check *receiver* and return ``(key, deref, func, is_weak, is_async)``.

    One pass doing what :func:`validate_receiver`, :func:`receiver_key`,
    :func:`reference` and :func:`is_async_receiver` do, with a fast path for
    plain functions (the common receiver): everything is read from the code
    object. ``connect()`` calls it before taking the signal's lock.

    Raises:
        ReceiverNotCallableError: *receiver* is not callable.
        ReceiverSignatureError: *receiver* does not accept ``**kwargs``.
    """
    if type(receiver) is not _FunctionType:
        validate_receiver(receiver)
        if weak:
            # Inline receivers would die as connect() returns: held strongly (see _inline).
            if type(receiver) is _MethodType:
                weak = not _inline.instance_vanishes(receiver)
            elif isinstance(receiver, functools.partial):
                weak = False
            else:  # a callable object: counted here, like a nested function below
                weak = not _inline.vanishes(receiver, _getrefcount(receiver))
        deref, func, is_weak = reference(receiver, weak, callback)
        return receiver_key(receiver), deref, func, is_weak, is_async_receiver(receiver)
    code = receiver.__code__
    flags = code.co_flags
    if not flags & _CO_VARKEYWORDS:
        validate_receiver(receiver)  # raises the usual error
    # Coroutine functions by their flag; markers (inspect's, asgiref's) live
    # in the function's attributes, absent on almost every function.
    is_async = False
    if flags & _CO_COROUTINE:
        is_async = True
    elif hasattr(receiver, "_is_coroutine_marker") or hasattr(receiver, _ASGIREF_MARKER):
        is_async = is_async_receiver(receiver)
    # Lambdas are always kept; nested functions (closures, functools.wraps
    # wrappers) when only the connect call holds them (see _inline). Read
    # from the code object, which attributes copied onto a function don't
    # change. The count is read here, inline: _inline.calibrate measures it
    # through this very path.
    if (
        weak
        and code.co_name != "<lambda>"
        and (not flags & _CO_NESTED or not _inline.vanishes(receiver, _getrefcount(receiver)))
    ):
        return id(receiver), _weakref(receiver, callback), None, True, is_async
    return id(receiver), _strong(receiver), None, False, is_async


def _accepts_kwargs_slow(receiver: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(receiver)
    except (TypeError, ValueError):
        # Builtins without a text signature: nothing to check against.
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def validate_receiver(receiver: object) -> None:
    """Raise if *receiver* cannot be called as ``receiver(**named)``.

    Plain functions and methods are checked through their code flags; only
    other callables (partials, callable objects) pay for ``inspect.signature``.

    Raises:
        ReceiverNotCallableError: *receiver* is not callable.
        ReceiverSignatureError: *receiver* does not accept ``**kwargs``.
    """
    if type(receiver) is _FunctionType:
        if receiver.__code__.co_flags & _CO_VARKEYWORDS:
            return
    elif type(receiver) is _MethodType and type(receiver.__func__) is _FunctionType:
        if receiver.__func__.__code__.co_flags & _CO_VARKEYWORDS:
            return
    elif not callable(receiver):
        msg = (
            "Signal receivers must be callable. "
            f"Expected a function, method or callable object; got {receiver!r} "
            f"(of type {type(receiver).__name__}). Pass the function itself, "
            "not the result of calling it."
        )
        raise ReceiverNotCallableError(msg)
    elif _accepts_kwargs_slow(receiver):
        return
    msg = (
        "Signal receivers must accept keyword arguments (**kwargs). "
        f"{qualified_name(receiver)} does not; signals call receivers as "
        "receiver(signal=..., sender=..., **named). Add **kwargs to its parameters, "
        "for example: def handler(sender, **kwargs): ..."
    )
    raise ReceiverSignatureError(msg)


def _unwrap(receiver: object) -> object:
    while isinstance(receiver, functools.partial):
        receiver = receiver.func
    return receiver


def is_async_receiver(receiver: object) -> bool:
    """Whether calling *receiver* returns an awaitable to be awaited.

    True for coroutine functions and bound async methods, for objects whose
    ``__call__`` is ``async def``, for ``functools.partial`` of any of these,
    and for callables marked with ``inspect.markcoroutinefunction`` or
    asgiref's marker. Decided once, at connect time.
    """
    target = _unwrap(receiver)
    if inspect.iscoroutinefunction(target):
        return True
    if getattr(target, _ASGIREF_MARKER, None) is not None and _is_asgiref_marked(target):
        return True
    if not isinstance(target, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - is the type's __call__ async?
        if call is not None and inspect.iscoroutinefunction(call):
            return True
    return False


def _is_asgiref_marked(target: object) -> bool:
    marker = getattr(target, _ASGIREF_MARKER)
    # asgiref sets ``_is_coroutine = asyncio.coroutines._is_coroutine``, an
    # object() sentinel; compare by name to avoid importing asyncio's private.
    return type(marker) is object or marker is True


def log_name(receiver: object) -> str:
    """The name Django's robust-send and ``on_commit`` logs give *receiver*; never raises.

    Its ``__qualname__`` (``Handler.on_save``, ``make.<locals>.handler``), as
    Django prints it; for a ``functools.partial``, that of the function
    inside; for a callable object without one, ``"<class qualname> instance"``.
    """
    try:
        target = _unwrap(receiver)
        name = getattr(target, "__qualname__", None)
        if isinstance(name, str):
            return name
        return f"{type(target).__qualname__} instance"
    except Exception:  # noqa: BLE001 - a name for a log line must never fail
        return object.__repr__(receiver)


def error_text(exc: BaseException) -> str:
    """``str(exc)`` for a log line; never raises (as the traceback module does)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a log line must never fail
        return "<exception str() failed>"


def qualified_name(receiver: object) -> str:
    """A readable, never-raising name for *receiver*, for logs and errors."""
    try:
        target = _unwrap(receiver)
        if isinstance(target, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type)):
            module = getattr(target, "__module__", None)
            name = getattr(target, "__qualname__", None) or repr(target)
        else:
            cls = type(target)
            module, name = cls.__module__, f"{cls.__qualname__} instance"
        name = f"{module}.{name}" if module else name
        if target is not receiver:
            name = f"functools.partial({name}, ...)"
    except Exception:  # noqa: BLE001 - a name for a log line must never fail
        return object.__repr__(receiver)
    return name


def describe(receiver: object) -> tuple[str, str, str | None]:
    """Return ``(module, qualname, "file:line" or None)`` for *receiver*.

    Cheap, so that ``connections()`` costs in proportion to the connections:
    a function's line comes from its code object, a class's (a callable
    object is described by its class) from a per-class cache (see
    :func:`_class_where`).
    """
    target = _unwrap(receiver)
    if isinstance(target, types.MethodType):
        target = target.__func__
    if not isinstance(target, (types.FunctionType, types.BuiltinFunctionType, type)):
        target = type(target)  # a callable object: described by its class
    module = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None) or repr(target)
    where = None
    code = getattr(target, "__code__", None)
    if code is not None:
        where = f"{code.co_filename}:{code.co_firstlineno}"
    elif isinstance(target, type):
        where = _class_where(target)
    return module, qualname, where


# "file:line" of each class described so far (classes are never unhashable
# here in practice; one whose metaclass makes it so is looked up each time).
_class_wheres: weakref.WeakKeyDictionary[type, str | None] = weakref.WeakKeyDictionary()
# filename -> (the linecache lines parsed, {qualname: [(first, last line)]}).
_parsed_files: dict[str, tuple[list[str], dict[str, list[tuple[int, int]]]]] = {}


def _class_where(cls: type) -> str | None:
    """``"file:line"`` of *cls*'s definition (its first decorator), or None.

    The line ``inspect.getsourcelines`` reports, without its cost: on
    Python < 3.13 that parses the whole file on every call, which made
    ``connections()`` take seconds for a few hundred callable objects. Here
    each class is looked up once, and each file parsed once per version of
    its text (Python 3.13+ records the line on the class: no parse at all).
    """
    try:
        return _class_wheres[cls]
    except KeyError:
        pass
    except TypeError:  # unhashable
        return _find_class(cls)
    where = _class_wheres[cls] = _find_class(cls)
    return where


def _find_class(cls: type) -> str | None:
    try:
        filename = inspect.getsourcefile(cls)
    except (OSError, TypeError):  # a built-in class, or no file to be found
        return None
    if filename is None:
        return None
    module = sys.modules.get(cls.__module__)
    linecache.checkcache(filename)  # as inspect does: notice a file changed on disk
    lines = linecache.getlines(filename, getattr(module, "__dict__", None))
    if not lines:
        return None
    if sys.version_info >= (3, 13):
        line = vars(cls).get("__firstlineno__")  # set by the compiler, decorators included
        return f"{filename}:{line}" if isinstance(line, int) else None
    candidates = _classes_in(filename, lines).get(cls.__qualname__)
    if not candidates:
        return None
    first, _ = candidates[-1]  # a name defined twice: the later one won, unless...
    if len(candidates) > 1:  # ...a function of the class says where its body is
        lines_of_code = [
            member.__code__.co_firstlineno
            for member in vars(cls).values()
            if isinstance(member, types.FunctionType) and member.__module__ == cls.__module__
        ]
        for start, end in candidates:
            if any(start <= line <= end for line in lines_of_code):
                first = start
                break
    return f"{filename}:{first}"


def _classes_in(filename: str, lines: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Every class statement of a file: qualname -> [(first line, last line)], cached."""
    cached = _parsed_files.get(filename)
    if cached is not None and cached[0] is lines:  # linecache keeps one list per file version
        return cached[1]
    found: dict[str, list[tuple[int, int]]] = {}
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        tree = None
    if tree is not None:
        _ClassLines(found).visit(tree)
    _parsed_files[filename] = (lines, found)
    return found


class _ClassLines(ast.NodeVisitor):
    """Collect class statements by qualname, as ``inspect`` finds them."""

    def __init__(self, found: dict[str, list[tuple[int, int]]]) -> None:
        self.found = found
        self.stack: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack += [node.name, "<locals>"]
        self.generic_visit(node)
        del self.stack[-2:]

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - ast's naming

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        end = node.end_lineno if node.end_lineno is not None else node.lineno
        self.found.setdefault(".".join(self.stack), []).append((first, end))
        self.generic_visit(node)
        self.stack.pop()


_CodeKey = tuple[str, int, str]
_warned_copies: set[_CodeKey] = set()  # warn once per receiver definition, process-wide


def module_copies(records: Iterable[Record]) -> list[tuple[types.FunctionType, types.FunctionType]]:
    """Pairs of receiver functions defined by one source line in two module copies.

    Same file, line and name, but different module globals: the file was
    imported twice under two names. Closures made by one factory share their
    module's globals, and a reloaded module keeps its globals, so neither
    counts. Only pairs not reported before are returned. Runs no user code.
    """
    first_seen: dict[_CodeKey, types.FunctionType] = {}
    found = []
    for record in records:
        func = receiver_function(record)
        if type(func) is types.MethodType:
            func = func.__func__
        if type(func) is not types.FunctionType:
            continue
        code = func.__code__
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        first = first_seen.setdefault(key, func)
        if first.__globals__ is not func.__globals__ and key not in _warned_copies:
            _warned_copies.add(key)
            found.append((first, func))
    return found


def warn_module_copies(signal: object, pairs: list[tuple[types.FunctionType, types.FunctionType]]) -> None:
    """Warn about each pair :func:`module_copies` found, at the receiver's definition."""
    for first, second in pairs:
        code = second.__code__
        msg = (
            f"{qualified_name(second)} is connected to {signal!r} twice, from two copies of the "
            f"module in {code.co_filename}: {first.__module__!r} and {second.__module__!r}. The file "
            f"was imported under two names, so each copy connected its own function and every send "
            f"calls it twice. Import it under one name only (check sys.path and how the program is "
            f"started), or connect it with dispatch_uid= so that the second connect is a duplicate."
        )
        warnings.warn_explicit(
            msg, DuplicateReceiverWarning, code.co_filename, code.co_firstlineno, module=second.__module__
        )


def identity_of(record: Record) -> object | None:
    """The :func:`receiver_key` of *record*'s receiver, or ``None`` once it was collected.

    The same identity whether or not it was connected with ``dispatch_uid=``,
    for tools that select connections by receiver (muting).
    """
    receiver = resolve(record)
    return None if receiver is None else receiver_key(receiver)
