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
and checks plain-class annotations with ``isinstance``, raising
``tocsin.exceptions.SendArgumentsError`` before any receiver runs.

Receivers are still called as ``receiver(signal=..., sender=..., **named)``:
the type check covers the payload; ``connect()`` still requires ``**kwargs``
at run time. ``connect()`` and ``connected_to()`` check the receiver;
``@tocsin.receiver`` stays untyped; use ``@sig.connect`` for checked
receivers.
"""

from __future__ import annotations

import inspect
import typing
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from . import _meta
from ._signal import Signal
from .exceptions import SendArgumentsError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable
    from contextlib import AbstractContextManager
    from typing import Concatenate

    from ._delivery import DeliveryPolicy
    from ._hooks import Dispatch, Responses

__all__ = ["TypedSignal", "typed_signal"]

P = ParamSpec("P")
_R = TypeVar("_R")


class _Validator:
    """Checks each send's named arguments against the spec (``validate=True``)."""

    __slots__ = ("hints", "signature", "spec")

    def __init__(self, spec: Callable[..., object]) -> None:
        self.spec = spec
        self.signature = inspect.signature(spec)
        try:
            hints = typing.get_type_hints(spec)
        except (NameError, TypeError):  # unresolvable annotations: check names only
            hints = {}
        self.hints = {k: v for k, v in hints.items() if k != "return" and isinstance(v, type)}

    def check(self, dispatch: Dispatch) -> None:
        name = dispatch.signal.name or repr(dispatch.signal)
        try:
            self.signature.bind(**dispatch.named)
        except TypeError as exc:
            names = ", ".join(self.signature.parameters)
            msg = f"{name}.send() arguments do not match its spec ({names}): {exc}."
            raise SendArgumentsError(msg) from None
        for key, value in dispatch.named.items():
            expected = self.hints.get(key)
            if expected is not None and not isinstance(value, expected):
                msg = (
                    f"{name}.send() argument {key!r} must be {expected.__qualname__} "
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
            interceptor call per send); off by default.
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
        ) -> AbstractContextManager[Callable[Concatenate[Any, P], _R]]: ...


def typed_signal(spec: Callable[P, object]) -> TypedSignal[P]:
    """Declare a :class:`TypedSignal` from a spec function (a decorator).

    The signal takes the function's name, docstring and module.

    .. versionadded:: 0.1
    """
    sig = TypedSignal(spec)
    sig.module = getattr(spec, "__module__", sig.module)
    return sig


_meta.skip_frames_of(typed_signal.__code__)
