"""Typed signals: declare what a signal sends; type checkers check every send.

A :class:`TypedSignal` is declared from a *spec*, a function whose
keyword-only parameters are the named arguments the signal sends. The
``@typed_signal`` decorator does it in one step, taking the signal's name,
module and doc from the function::

    @tocsin.typed_signal
    def order_placed(*, order: Order, total: Decimal) -> None:
        "Sent after an order is placed."

    order_placed.send(Shop, order=o, total=Decimal(5))   # OK
    order_placed.send(Shop, order=o)                     # error: missing total
    order_placed.send(Shop, ordr=o, total=Decimal(5))    # error: unexpected ordr

    @order_placed.connect
    def email(sender: object, *, order: Order, **kwargs: object) -> None: ...   # OK

    @order_placed.connect
    def bad(sender: object, *, order: int, **kwargs: object) -> None: ...      # error

Why a ParamSpec over a TypedDict payload: ``Unpack[TypedDict]`` cannot be
generic, while ``ParamSpec`` carries names, types and defaults through both
``send()`` and the receivers' signatures, with the usual keyword-argument
call syntax unchanged.

No runtime cost: the typed signatures exist only for type checkers; at run
time a ``TypedSignal`` *is* a ``Signal`` (same ``send``). With
``validate=True`` an interceptor binds every send's arguments to the spec
and checks class (and union of classes) annotations with ``isinstance``,
raising ``tocsin.exceptions.SendArgumentsError`` before any receiver runs;
annotations that do not resolve at run time are reported by one
``UncheckedAnnotationWarning`` (see ``_Validator``).

Receivers are still called as ``receiver(signal=..., sender=..., **named)``:
the type check covers the payload; ``connect()`` still requires ``**kwargs``
at run time. ``connect()`` and ``connected_to()`` check the receiver;
``@tocsin.receiver`` stays untyped; use ``@sig.connect`` for checked
receivers.
"""

from __future__ import annotations

import inspect
import sys
import threading
import types
import typing
import warnings
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from tocsin._core import identity as _identity
from tocsin._core.signal import Signal
from tocsin.exceptions import SendArgumentsError, UncheckedAnnotationWarning

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable
    from contextlib import AbstractContextManager
    from typing import Concatenate

    from tocsin._core.delivery import DeliveryPolicy
    from tocsin._core.errors import ErrorHandler
    from tocsin._core.hooks import Dispatch, Responses

__all__ = ["TypedSignal", "typed_signal"]

P = ParamSpec("P")
_R = TypeVar("_R")


# PEP 484's numeric promotions: type checkers accept an int where a float
# (or complex) is declared, so validation must too.
_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (float, int), complex: (complex, float, int)}


def _runtime_classes(hint: object) -> tuple[type, ...] | None:
    """The classes ``isinstance`` can check *hint* with, or None if it cannot.

    Classes and unions of classes (``int | None``, ``Optional[int]``)
    qualify; ``Any``, generics (``list[int]``), ``Literal``, type variables
    and protocols that are not ``@runtime_checkable`` do not.
    """
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    classes: list[type] = []
    for arg in typing.get_args(hint) if union else (hint,):
        if not isinstance(arg, type):
            return None
        try:
            isinstance(None, arg)
        except TypeError:  # Any (a class since 3.11), a non-runtime protocol...
            return None
        classes.extend(_PROMOTIONS.get(arg, (arg,)))
    return tuple(classes)


def _display(hint: object) -> str:
    """``Decimal``, ``Order | None``: how an error message names *hint* (a class or union of classes)."""
    names = (
        "None" if arg is type(None) else getattr(arg, "__qualname__", repr(arg))
        for arg in typing.get_args(hint) or (hint,)
    )
    return " | ".join(names)


class _Validator:
    """Checks each send's named arguments against the spec (``validate=True``).

    The annotations are resolved at the first send, not when the signal is
    made: by then the spec's module has finished importing, so names it
    defines or imports after the spec resolve. Each annotation is resolved on
    its own, so one that cannot be (a name imported only under ``if
    TYPE_CHECKING:``) leaves the others checked; those are reported once, by
    an ``UncheckedAnnotationWarning`` at the spec's definition.
    """

    __slots__ = ("_hints", "_lock", "signature", "spec")

    def __init__(self, spec: Callable[..., object]) -> None:
        self.spec = spec
        self.signature = inspect.signature(spec)
        # name -> (classes for isinstance, how to name them); None until the first send
        self._hints: dict[str, tuple[tuple[type, ...], str]] | None = None
        self._lock = threading.Lock()

    def _resolve(self, signal_name: str) -> dict[str, tuple[tuple[type, ...], str]]:
        with self._lock:
            if self._hints is not None:  # another thread resolved them meanwhile
                return self._hints
            target = inspect.unwrap(self.spec)
            globalns = getattr(target, "__globals__", None)
            if globalns is None:  # not a plain function: its module's namespace
                module = sys.modules.get(getattr(target, "__module__", ""))
                globalns = vars(module) if module is not None else {}
            hints: dict[str, tuple[tuple[type, ...], str]] = {}
            unresolved: list[str] = []
            for name, param in self.signature.parameters.items():
                annotation = param.annotation
                if annotation is inspect.Parameter.empty:
                    continue
                # One annotation at a time, through typing's own resolution.
                holder = types.SimpleNamespace(__annotations__={name: annotation})
                try:
                    hint = typing.get_type_hints(holder, globalns=globalns)[name]
                except Exception as exc:  # noqa: BLE001 - any failure leaves this one unchecked
                    unresolved.append(f"{name!r} (annotation {annotation!r}: {exc})")
                    continue
                classes = _runtime_classes(hint)
                if classes is not None:
                    hints[name] = (classes, _display(hint))
            if unresolved:
                self._warn(signal_name, unresolved)
            self._hints = hints
            return hints

    def _warn(self, signal_name: str, unresolved: list[str]) -> None:
        listed = (
            unresolved[0] if len(unresolved) == 1 else f"{', '.join(unresolved[:-1])} and {unresolved[-1]}"
        )
        kind = "type" if len(unresolved) == 1 else "types"
        msg = (
            f"{signal_name} validates its sends (validate=True) but cannot check the {kind} of "
            f"{listed}. A name imported only under `if TYPE_CHECKING:`, or defined inside a "
            "function, cannot be resolved at run time. The argument names and the other "
            "annotations are still checked. Import these "
            "names at run time to check them too, or filter "
            "tocsin.exceptions.UncheckedAnnotationWarning to accept this."
        )
        code = getattr(inspect.unwrap(self.spec), "__code__", None)
        if code is None:
            warnings.warn(msg, UncheckedAnnotationWarning, stacklevel=2)
            return
        module = getattr(self.spec, "__module__", None) or "tocsin"
        warnings.warn_explicit(
            msg, UncheckedAnnotationWarning, code.co_filename, code.co_firstlineno, module=module
        )

    def check(self, dispatch: Dispatch) -> None:
        name = dispatch.signal.name or repr(dispatch.signal)
        try:
            self.signature.bind(**dispatch.kwargs)
        except TypeError as exc:
            names = ", ".join(self.signature.parameters)
            msg = f"{name}.send() arguments do not match its spec ({names}): {exc}."
            raise SendArgumentsError(msg) from None
        hints = self._hints
        if hints is None:
            hints = self._resolve(name)
        for key, value in dispatch.kwargs.items():
            expected = hints.get(key)
            if expected is not None and not isinstance(value, expected[0]):
                msg = (
                    f"{name}.send() argument {key!r} must be {expected[1]} "
                    f"(got {value!r} that is a {type(value).__qualname__})."
                )
                raise SendArgumentsError(msg)

    def send(self, dispatch: Dispatch, proceed: Callable[[], Responses]) -> Responses:
        self.check(dispatch)
        return proceed()

    async def asend(self, dispatch: Dispatch, proceed: Callable[[], Awaitable[Responses]]) -> Responses:
        self.check(dispatch)
        return await proceed()


class TypedSignal(Signal, Generic[P]):
    """A :class:`Signal` whose named arguments are declared by a spec function.

    Args:
        spec: a function with keyword-only parameters naming and typing what
            the signal sends (its body is never called).
        name: defaults to the spec's ``__name__``.
        doc: defaults to the spec's docstring.
        validate: check every send against the spec at run time (costs an
            interceptor call per send); off by default. Argument names are
            checked, and the types of annotations that are classes or
            unions of classes. Annotations are resolved at the first send;
            one that does not resolve (a name imported only under ``if
            TYPE_CHECKING:``) is reported by an ``UncheckedAnnotationWarning``
            and left unchecked.
        **options: passed to :class:`Signal` (``async_mode``).

    .. versionadded:: 0.1

    """

    def __init__(
        self,
        spec: Callable[P, object],
        *,
        name: str | None = None,
        doc: str | None = None,
        validate: bool = False,
        async_mode: Literal["concurrent", "sequential"] = "concurrent",
    ) -> None:
        super().__init__(
            name=name if name is not None else getattr(spec, "__name__", None),
            doc=doc if doc is not None else inspect.getdoc(spec),
            async_mode=async_mode,
        )
        self.spec = spec
        if validate:
            self.add_interceptor(_Validator(spec))

    if TYPE_CHECKING:
        # Typed views of Signal's methods; at run time Signal's own are used.
        def send(  # type: ignore[override]
            self, sender: object, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Any, Any]]: ...

        def send_robust(  # type: ignore[override]
            self, sender: object, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Any, Any]]: ...

        async def asend(  # type: ignore[override]
            self, sender: object, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Any, Any]]: ...

        async def asend_robust(  # type: ignore[override]
            self, sender: object, *args: P.args, **kwargs: P.kwargs
        ) -> list[tuple[Any, Any]]: ...

        @overload  # type: ignore[override]
        def connect(
            self,
            receiver: Callable[Concatenate[Any, P], _R],
            sender: object = ...,
            weak: bool = ...,  # noqa: FBT001
            dispatch_uid: Hashable | None = ...,
            *,
            priority: int = ...,
            via: DeliveryPolicy | None = ...,
            on_error: ErrorHandler | None = ...,
        ) -> Callable[Concatenate[Any, P], _R]: ...

        @overload
        def connect(
            self,
            receiver: None = ...,
            sender: object = ...,
            weak: bool = ...,  # noqa: FBT001
            dispatch_uid: Hashable | None = ...,
            *,
            priority: int = ...,
            via: DeliveryPolicy | None = ...,
            on_error: ErrorHandler | None = ...,
        ) -> Callable[[Callable[Concatenate[Any, P], _R]], Callable[Concatenate[Any, P], _R]]: ...

        def connect(self, *args: Any, **kwargs: Any) -> Any: ...

        def connected_to(  # type: ignore[override]
            self,
            receiver: Callable[Concatenate[Any, P], _R],
            sender: object = ...,
            *,
            local: bool = ...,
            weak: bool = ...,
            dispatch_uid: Hashable | None = ...,
            priority: int = ...,
            via: DeliveryPolicy | None = ...,
            on_error: ErrorHandler | None = ...,
        ) -> AbstractContextManager[Callable[Concatenate[Any, P], _R]]: ...


def typed_signal(spec: Callable[P, object]) -> TypedSignal[P]:
    """Declare a :class:`TypedSignal` from a spec function (a decorator).

    The signal takes the function's name, docstring and module.

    .. versionadded:: 0.1
    """
    sig = TypedSignal(spec)
    sig.module = getattr(spec, "__module__", sig.module)
    return sig


_identity.skip_frames_of(typed_signal.__code__)
