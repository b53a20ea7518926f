"""Django's model signals for SQLAlchemy 2.x ORM classes.

Where each signal comes from (see docs/sqlalchemy.md for the contract):

* ``class_prepared``: ``after_mapper_constructed``, when the class is mapped.
* ``pre_init`` / ``post_init``: the ``init`` instance event and a wrapper
  around the instrumented ``__init__``; for rows loaded from the database,
  the ``load`` event sends both, as Django's ``from_db`` does.
* ``pre_save`` / ``pre_delete`` / ``m2m_changed`` ``pre_*``: ``before_flush``,
  looping until receivers stop adding work, since receivers may add, edit or
  delete objects.
* ``post_save`` / ``post_delete`` / ``m2m_changed`` ``post_*``: recorded by
  the mapper events inside the flush (which alone know what SQL ran) and sent
  from ``after_flush_postexec``.

Receivers never run inside mapper events: there the Session may not be used
("not currently supported within the execution stage of the flush"), while
Django receivers routinely query and create rows. In ``before_flush`` and
``after_flush_postexec`` the Session is usable; objects a ``post_save``
receiver adds are flushed by the same ``commit()``, and a receiver's
exception aborts the flush, which rolls the transaction back.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapper, Session, registry, sessionmaker
from sqlalchemy.util import concurrency

from tocsin._core import async_asyncio as _async
from tocsin._core import hooks
from tocsin._core import inline as _inline
from tocsin._core import receivers as _receivers
from tocsin._core.delivery import check_policy
from tocsin._core.errors import hold_handler
from tocsin._core.plans import _check_priority
from tocsin._core.signal import Signal
from tocsin.exceptions import AsyncContextError, InvalidArgumentError

from ._commit import in_greenlet as _in_greenlet

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from sqlalchemy.orm.state import InstanceState

    from tocsin._core.delivery import DeliveryPolicy
    from tocsin._core.errors import ErrorHandler

__all__ = [
    "ModelSignal",
    "class_prepared",
    "install",
    "m2m_changed",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
    "raw_loading",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_lock = threading.RLock()
_model_signals: weakref.WeakSet[ModelSignal] = weakref.WeakSet()
_mapped: weakref.WeakSet[type[Any]] = weakref.WeakSet()


def _lookup(spec: str) -> list[type[Any]]:
    """Return the mapped classes named ``"module:Qualname"``, ``"module.Qualname"`` or ``"Name"``."""
    if ":" in spec:
        module_name, _, qualname = spec.partition(":")
        found: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        return [found] if isinstance(found, type) and found in _mapped else []
    return [
        cls
        for cls in list(_mapped)
        if spec in (cls.__name__, cls.__qualname__, f"{cls.__module__}.{cls.__qualname__}")
    ]


def _check_pending(
    signal: Signal, receiver: Any, dispatch_uid: Hashable | None, priority: int, via: object
) -> int:
    """Raise as ``Signal.connect()`` would for these arguments; return the priority."""
    _receivers.validate_receiver(receiver)
    if via is not None:
        check_policy(via, receiver, signal)
    hash(dispatch_uid)  # unhashable: connect()'s TypeError, now rather than at resolution
    return _check_priority(priority)


class ModelSignal(Signal):
    """A signal whose sender is a mapped class, which may be named lazily.

    Like Django's ``ModelSignal``, ``connect()`` and ``disconnect()`` accept
    the class itself or a string naming it: ``"package.module:Article"``,
    ``"package.module.Article"`` or just ``"Article"``. A string naming a
    class that is not mapped yet is resolved when it is; until then the
    receiver is held strongly. A bare name connects to the first class
    mapped under that name.
    """

    def __init__(self, use_caching: bool = False, *, name: str | None = None, doc: str | None = None) -> None:  # noqa: FBT001, FBT002
        super().__init__(use_caching, name=name, doc=doc)
        self._pending: list[tuple[str, Callable[..., Any], bool, Hashable | None, int, Any, Any]] = []
        with _lock:
            _model_signals.add(self)

    @overload
    def connect(
        self,
        receiver: _F,
        sender: object = ...,
        weak: bool = ...,  # noqa: FBT001
        dispatch_uid: Hashable | None = ...,
        *,
        priority: int = ...,
        via: DeliveryPolicy | None = ...,
        on_error: ErrorHandler | None = ...,
    ) -> _F: ...

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
    ) -> Callable[[_F], _F]: ...

    def connect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        weak: bool = True,  # noqa: FBT001, FBT002 - Django's signature
        dispatch_uid: Hashable | None = None,
        *,
        priority: int = 0,
        via: DeliveryPolicy | None = None,
        on_error: ErrorHandler | None = None,
    ) -> Any:
        """Connect *receiver*; *sender* may be a mapped class or a string naming one.

        See ``tocsin.Signal.connect`` for the arguments.
        """
        if receiver is None or not isinstance(sender, str):
            if receiver is None:

                def decorator(func: _F) -> _F:
                    with _inline.kept_by_caller(func):  # bound to a name next (see _inline)
                        self.connect(
                            func, sender, weak, dispatch_uid, priority=priority, via=via, on_error=on_error
                        )
                    return func

                return decorator
            return super().connect(
                receiver, sender, weak, dispatch_uid, priority=priority, via=via, on_error=on_error
            )
        with _lock:
            classes = _lookup(sender)
            if not classes:
                # Refuse now what connect() would refuse at resolution, without
                # touching this signal's connections (the receiver may already
                # be connected for another sender, or for any sender).
                priority = _check_pending(self, receiver, dispatch_uid, priority, via)
                if on_error is not None:
                    hold_handler(on_error, weak=False)  # refused now if not callable
                # A temporary (decided at this connect's entry, see _inline) is
                # connected strongly once its class is mapped; the pending list
                # holds every receiver strongly until then.
                weak = weak and _inline.decided(receiver) is not True
                self._pending.append((sender, receiver, weak, dispatch_uid, priority, via, on_error))
                return receiver
        return super().connect(
            receiver, classes[0], weak, dispatch_uid, priority=priority, via=via, on_error=on_error
        )

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect *receiver* (or *dispatch_uid*); *sender* may be a string."""
        if not isinstance(sender, str):
            return super().disconnect(receiver, sender, dispatch_uid)
        with _lock:
            before = len(self._pending)
            self._pending = [
                p
                for p in self._pending
                if not (
                    p[0] == sender
                    and (p[3] == dispatch_uid if dispatch_uid is not None else p[1] == receiver)
                )
            ]
            removed = len(self._pending) != before
            classes = _lookup(sender)
        for cls in classes:
            removed = super().disconnect(receiver, cls, dispatch_uid) or removed
        return removed

    def _resolve_pending(self, cls: type[Any]) -> None:
        with _lock:
            ready = [p for p in self._pending if cls in _lookup(p[0])]
            self._pending = [p for p in self._pending if p not in ready]
        for _, receiver, weak, uid, priority, via, on_error in ready:
            super().connect(receiver, cls, weak, uid, priority=priority, via=via, on_error=on_error)


class_prepared: Final = Signal(name="class_prepared", doc="A class was mapped. Sends sender=class.")
pre_init: Final = ModelSignal(name="pre_init", doc="Before __init__ or a load. Sends args, kwargs.")
post_init: Final = ModelSignal(name="post_init", doc="After __init__ or a load. Sends instance.")
pre_save: Final = ModelSignal(
    name="pre_save", doc="Before an INSERT or UPDATE is flushed. Sends instance, raw, using, update_fields."
)
post_save: Final = ModelSignal(
    name="post_save", doc="After an INSERT or UPDATE. Sends instance, created, update_fields, raw, using."
)
pre_delete: Final = ModelSignal(name="pre_delete", doc="Before a DELETE. Sends instance, using, origin.")
post_delete: Final = ModelSignal(name="post_delete", doc="After a DELETE. Sends instance, using, origin.")
m2m_changed: Final = ModelSignal(
    name="m2m_changed",
    doc="A many-to-many collection changed; sender is the secondary Table. "
    "Sends instance, action, reverse, model, pk_set, using.",
)
# Pickled, listed and found by `tocsin inspect` under their public path, never
# this private one: private modules may move (see _core.meta.reduce_signal).
for _model_signal in (
    class_prepared,
    pre_init,
    post_init,
    pre_save,
    post_save,
    pre_delete,
    post_delete,
    m2m_changed,
):
    _model_signal.module = "tocsin.sqlalchemy"
del _model_signal

raw_flag: contextvars.ContextVar[bool] = contextvars.ContextVar("tocsin_sqlalchemy_raw", default=False)


@contextlib.contextmanager
def raw_loading() -> Iterator[None]:
    """Send ``raw=True`` with the save signals of flushes inside this block.

    For fixture loaders, like Django's ``loaddata``: receivers should not
    touch other rows while data is loaded as is.
    """
    token = raw_flag.set(True)
    try:
        yield
    finally:
        raw_flag.reset(token)


# ---- async receivers under AsyncSession ---------------------------------------

_await_: Final[Callable[[Any], Any]] = getattr(concurrency, "await_", None) or concurrency.await_only


def _await_in_greenlet(coro: Any) -> Any:
    """Run *coro* to completion from sync code inside SQLAlchemy's greenlet."""
    if _in_greenlet():
        return _await_(coro)
    # Only an async receiver making a sync send of its own gets here.
    coro.close()
    msg = (
        "Signal.send() reached async receivers from inside a running event loop, outside "
        "SQLAlchemy's greenlet: it cannot wait for them there. Use `await signal.asend(...)`."
    )
    raise AsyncContextError(msg)


@contextlib.contextmanager
def awaiting() -> Iterator[None]:
    """Let the sends in this block run async receivers, if inside an AsyncSession's greenlet.

    An AsyncSession runs the sync Session in a greenlet inside the event
    loop, where ``send()`` would refuse async receivers (it cannot block the
    loop). There SQLAlchemy's ``await_`` can wait for them instead, as
    the driver's I/O does: set it as the core's awaiter (see ``_async``).
    """
    if not _in_greenlet():
        yield
        return
    token = _async.awaiter.set(_await_in_greenlet)
    try:
        yield
    finally:
        _async.awaiter.reset(token)


# ---- installation ------------------------------------------------------------


class _Config:
    __slots__ = ("delete_statements", "using")

    def __init__(self, using: str | Callable[[Session], str], *, delete_statements: bool) -> None:
        self.using = using
        self.delete_statements = delete_statements

    def alias(self, session: Session) -> str:
        return self.using if isinstance(self.using, str) else self.using(session)


_MARK: Final = "tocsin.sqlalchemy.models"  # Session.info key: the _Config of a sessionmaker install
_registries: weakref.WeakKeyDictionary[registry, _Config] = weakref.WeakKeyDictionary()
_everywhere: list[_Config] = []  # set by installs on sessionmakers: class hooks on every mapper
_listening = False


def install(
    target: type[DeclarativeBase | Any] | registry | sessionmaker[Any] | async_sessionmaker[Any],
    *,
    using: str | Callable[[Session], str] = "default",
    delete_statements: bool = False,
) -> None:
    """Send Django's model signals for *target*'s classes or sessions.

    Args:
        target: a declarative base class or a ``registry`` (signals for its
            classes, from every Session and AsyncSession), or a
            ``sessionmaker`` / ``async_sessionmaker`` (signals for every
            mapped class, from that maker's sessions only).
        using: the ``using`` alias sent with every signal, or a function of
            the (sync) Session returning it.
        delete_statements: also send ``pre_delete``/``post_delete`` once per
            row for ORM ``delete(Model)`` statements, fetching the rows
            first, like Django's ``QuerySet.delete()``. Off by default since
            it costs a SELECT; only done when a receiver is connected.

    Installing twice is harmless; the last configuration wins.

    .. versionadded:: 0.1

    """
    config = _Config(using, delete_statements=delete_statements)
    reg: registry | None = None
    if isinstance(target, registry):
        reg = target
    elif isinstance(target, type) and isinstance(getattr(target, "registry", None), registry):
        reg = getattr(target, "registry")  # noqa: B009 - mypy does not know every base has one
    elif isinstance(target, sessionmaker) or _is_async_maker(target):
        info = getattr(target, "kw").setdefault("info", {})  # noqa: B009 - both makers keep kw
        info[_MARK] = config
    else:
        msg = (
            f"install() takes a declarative base class, a registry, a sessionmaker or an "
            f"async_sessionmaker; got {target!r}. For example: tocsin.sqlalchemy.install(Base)."
        )
        raise InvalidArgumentError(msg)
    with _lock:
        _start_listening()
        if reg is not None:
            _registries[reg] = config
            mappers = list(reg.mappers)
        else:
            _everywhere[:] = [config]
            mappers = [m for r in _all_registries() for m in r.mappers]
    from ._flush import hook_m2m  # noqa: PLC0415 - it imports this module

    for mapper in mappers:
        _hook_class(mapper)
        if mapper.configured:
            hook_m2m(mapper)


def _is_async_maker(target: object) -> bool:
    # Imported only if the application did: it needs greenlet.
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(target, module.async_sessionmaker)


def _all_registries() -> list[registry]:
    # Private, but the only list of every registry; an empty list merely
    # leaves classes mapped before install() without class-level hooks.
    mapper_module = sys.modules.get("sqlalchemy.orm.mapper")
    return list(getattr(mapper_module, "_mapper_registries", {}))


def class_config(mapper: Mapper[Any]) -> _Config | None:
    config = _registries.get(mapper.registry)
    if config is None and _everywhere:
        return _everywhere[0]
    return config


def session_config(session: Session, mapper: Mapper[Any]) -> _Config | None:
    config: _Config | None = session.info.get(_MARK)
    return config if config is not None else _registries.get(mapper.registry)


def _listeners() -> list[tuple[Any, str, Callable[..., Any], dict[str, bool]]]:
    from . import _flush as flush  # noqa: PLC0415 - it imports this module

    # The per-row listeners take the InstanceState (raw=True) and their return
    # value is passed on (retval=True, they return None, which SQLAlchemy 2
    # ignores): then SQLAlchemy calls them directly, without a wrapper.
    per_row = {"raw": True}
    mapper_per_row = {"raw": True, "retval": True}
    return [
        (Mapper, "mapper_configured", flush.on_configured, {}),
        (Mapper, "init", _on_init, per_row),
        (Mapper, "load", _on_load, per_row),
        (Mapper, "before_update", flush.on_before_update, mapper_per_row),
        (Mapper, "after_insert", flush.on_after_insert, mapper_per_row),
        (Mapper, "after_update", flush.on_after_update, mapper_per_row),
        (Mapper, "after_delete", flush.on_after_delete, mapper_per_row),
        (Session, "before_flush", flush.before_flush, {}),
        (Session, "after_flush_postexec", flush.after_flush_postexec, {}),
        (Session, "after_soft_rollback", flush.after_soft_rollback, {}),
        (Session, "do_orm_execute", flush.on_orm_execute, {}),
    ]


def _start_listening() -> None:
    global _listening  # noqa: PLW0603 - one set of process-wide listeners
    if _listening:
        return
    _listening = True
    for target, name, listener, options in _listeners():
        event.listen(target, name, listener, **options)


def _stop_listening() -> None:
    """Remove the process-wide listeners (benchmarks/bench_sqlalchemy.py: SQLAlchemy alone)."""
    global _listening  # noqa: PLW0603
    with _lock:
        if not _listening:
            return
        _listening = False
        for target, name, listener, _ in _listeners():
            event.remove(target, name, listener)


@event.listens_for(Mapper, "after_mapper_constructed")
def _on_mapped(mapper: Mapper[Any], cls: type[Any]) -> None:
    # Listened to from import on, so lazily named senders resolve even for
    # classes mapped before install().
    with _lock:
        _mapped.add(cls)
        signals = list(_model_signals)
    for sig in signals:
        if sig._pending:  # noqa: SLF001 - our own class
            sig._resolve_pending(cls)  # noqa: SLF001
    if class_config(mapper) is not None:
        _hook_class(mapper)
        class_prepared.send(sender=cls)


def _hook_class(mapper: Mapper[Any]) -> None:
    """Wrap the instrumented ``__init__`` of *mapper*'s class to send ``post_init``."""
    cls = mapper.class_
    instrumented = cls.__dict__.get("__init__")
    if instrumented is None or getattr(instrumented, "_tocsin_post_init", False):
        return

    signal, nobody_listens, is_quiet = post_init, hooks.nobody_listens, hooks.is_quiet

    @functools.wraps(instrumented)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - it is __init__
        instrumented(self, *args, **kwargs)
        # A subclass's __init__ calls this one too: send once, for the real class.
        # Once per object, so no receiver anywhere costs one identity check.
        # Like pre_init, only while an install covers the class.
        if (
            type(self) is cls
            and not nobody_listens(signal)
            and not is_quiet(signal, cls)
            and class_config(mapper) is not None
        ):
            signal.send(sender=cls, instance=self)

    __init__._tocsin_post_init = True  # type: ignore[attr-defined]  # noqa: SLF001 - our own marker
    cls.__init__ = __init__


def _on_init(state: InstanceState[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # Once per object: no receiver anywhere costs one identity check, a class
    # nobody listens to (no receiver, no interceptor) one routing-table lookup.
    if hooks.nobody_listens(pre_init):
        return
    cls = state.class_
    if not hooks.is_quiet(pre_init, cls) and class_config(state.mapper) is not None:
        pre_init.send(sender=cls, args=args, kwargs=kwargs)


def _on_load(state: InstanceState[Any], context: Any) -> None:  # noqa: ARG001 - the event's signature
    cls = state.class_
    if hooks.is_quiet(pre_init, cls) and hooks.is_quiet(post_init, cls):
        return
    mapper = state.mapper
    if class_config(mapper) is None:
        return
    # Django's from_db() calls cls(*values): pre_init gets the column values.
    state_dict = state.dict
    values = tuple(state_dict.get(attr.key) for attr in mapper.column_attrs)
    with awaiting():  # rows an AsyncSession loads: inside its greenlet
        pre_init.send(sender=cls, args=values, kwargs={})
        post_init.send(sender=cls, instance=state.obj())
