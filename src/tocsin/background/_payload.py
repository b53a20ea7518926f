"""A send's arguments as JSON: encoded in the sender, decoded in the worker.

Never pickle: a job row is data, and a worker rebuilds only what this module
knows how to rebuild.

* JSON values pass as they are: ``str``, ``int``, ``float``, ``bool``,
  ``None``, lists, and dicts with string keys.
* A few types travel tagged, as a one-key object: ``{"$tuple": [...]}``,
  ``$set``, ``$frozenset``, ``$datetime``, ``$date``, ``$time``,
  ``$timedelta``, ``$decimal``, ``$uuid``, ``$bytes`` (base64) and ``$dict``
  (a dict whose keys are not all strings, or start with ``$``).
* A class is stored as ``{"$class": "module:Qualname"}``. The worker resolves
  it only to a class it already knows: a sender of one of the connections it
  may run, or a mapped SQLAlchemy class. Nothing is imported.
* A SQLAlchemy model instance travels as its class and primary key,
  ``{"$model": "module:Qualname", "pk": [...]}``; the worker loads the row
  fresh, in a Session of its own. A row deleted in the sending transaction
  (``post_delete``) cannot be loaded: its loaded column values are
  snapshotted at send time (``"row": {...}``) and the worker rebuilds a
  detached instance from them.

Anything else raises :class:`PayloadError` in the sender, naming the
argument, and nothing is enqueued.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ._errors import PayloadError

__all__ = ["Resolver", "class_name", "decode", "encode"]

_PLAIN = (str, int, float, bool, type(None))


def class_name(cls: type) -> str | None:
    """``module:Qualname`` of a class a worker can find by name, or None (local classes)."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}:{qualname}"


class _Encoding:
    """One encode() call: notes whether model instances were seen."""

    __slots__ = ("models", "purpose")

    def __init__(self, purpose: str) -> None:
        self.models = False
        self.purpose = purpose

    def value(self, value: Any, where: str) -> Any:  # noqa: C901, PLR0911, PLR0912 - one branch per type
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is list:
            return [self.value(item, f"{where}[{index}]") for index, item in enumerate(value)]
        if kind is dict:
            if all(type(k) is str and not k.startswith("$") for k in value):
                return {k: self.value(v, f"{where}[{k!r}]") for k, v in value.items()}
            return {
                "$dict": [
                    [self.value(k, f"{where} key {k!r}"), self.value(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ]
            }
        if kind is tuple:
            return {"$tuple": [self.value(item, f"{where}[{index}]") for index, item in enumerate(value)]}
        if kind in (set, frozenset):
            return {f"${kind.__name__}": [self.value(item, f"{where} item") for item in value]}
        if kind is dt.datetime:
            return {"$datetime": value.isoformat()}
        if kind is dt.date:
            return {"$date": value.isoformat()}
        if kind is dt.time:
            return {"$time": value.isoformat()}
        if kind is dt.timedelta:
            return {"$timedelta": [value.days, value.seconds, value.microseconds]}
        if kind is decimal.Decimal:
            return {"$decimal": str(value)}
        if kind is uuid.UUID:
            return {"$uuid": str(value)}
        if kind is bytes:
            return {"$bytes": base64.b64encode(value).decode("ascii")}
        if isinstance(value, type):
            name = class_name(value)
            if name is None:
                reason = "a class defined inside a function has no name a worker can find"
                raise _refuse(where, value, reason, self.purpose)
            return {"$class": name}
        state = _model_state(value)
        if state is not None:
            return self.model(value, state, where)
        raise _refuse(where, value, None, self.purpose)

    def model(self, value: Any, state: Any, where: str) -> Any:
        self.models = True
        cls = type(value)
        name = class_name(cls)
        if name is None:
            raise _refuse(where, value, "its class is defined inside a function", self.purpose)
        identity = state.identity
        if identity is None:
            pk = state.mapper.primary_key_from_instance(value)
            if any(part is None for part in pk):
                msg = (
                    f"argument {where} is a {cls.__qualname__} without a primary key yet (not flushed): a "
                    f"worker could not load it. Send after the flush (post_save is sent after it), or "
                    f"session.flush() first, or send its data as JSON instead."
                )
                raise PayloadError(msg, where)
            identity = tuple(pk)
        encoded: dict[str, Any] = {
            "$model": name,
            "pk": [self.value(p, f"{where} primary key") for p in identity],
        }
        if state.deleted or state.was_deleted:
            loaded = state.dict
            encoded["row"] = {
                attr.key: self.value(loaded[attr.key], f"{where}.{attr.key}")
                for attr in state.mapper.column_attrs
                if attr.key in loaded
            }
        return encoded


def _model_state(value: object) -> Any:
    """The SQLAlchemy ``InstanceState`` of a mapped instance, or None (SQLAlchemy not even imported)."""
    if sys.modules.get("sqlalchemy") is None:  # not in use (or blocked)
        return None
    from sqlalchemy import inspect  # noqa: PLC0415 - only once SQLAlchemy is in use

    state = inspect(value, raiseerr=False)
    return state if state is not None and hasattr(state, "identity") and hasattr(state, "mapper") else None


def _refuse(where: str, value: object, reason: str | None, purpose: str) -> PayloadError:
    try:
        shown = repr(value)
    except Exception:  # noqa: BLE001 - a message must never fail
        shown = object.__repr__(value)
    if len(shown) > 120:  # noqa: PLR2004
        shown = shown[:117] + "..."
    because = f" ({reason})" if reason else ""
    msg = (
        f"argument {where} = {shown} ({type(value).__qualname__}) cannot be {purpose}{because}. "
        f"Payloads carry JSON values (str, int, float, bool, None, list, dict), tuples, "
        f"sets, datetimes, Decimal, UUID, bytes, classes and SQLAlchemy model instances; send an id "
        f"or a dict of the data instead."
    )
    return PayloadError(msg, where)


def encode(
    sender: Any, kwargs: dict[str, Any], *, purpose: str = "stored for a background receiver"
) -> tuple[str, bool]:
    """Return the JSON payload of a send and whether it holds model instances.

    *purpose* completes "argument x cannot be ..." in the error message
    (``tocsin.broadcast`` says "broadcast").

    Raises:
        PayloadError: an argument cannot be stored; it is named.
    """
    encoding = _Encoding(purpose)
    data = {
        "sender": encoding.value(sender, "sender"),
        "kwargs": {name: encoding.value(value, name) for name, value in kwargs.items()},
    }
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # NaN or infinity: not JSON
        msg = f"a float argument is NaN or infinite, which JSON cannot carry: {exc}"
        raise PayloadError(msg, "?") from None
    return text, encoding.models


class Resolver(Protocol):
    """What the worker provides to rebuild classes and model instances."""

    def find_class(self, name: str) -> type:
        """The class named ``module:Qualname`` if this worker knows it; raise LookupError otherwise."""

    def load_model(self, cls: type, pk: tuple[Any, ...]) -> Any:
        """The row of mapped *cls* with primary key *pk*, loaded fresh; raise LookupError if gone."""

    def rebuild_model(self, cls: type, pk: tuple[Any, ...], row: dict[str, Any]) -> Any:
        """A detached instance of *cls* holding the column values *row* (a deleted row)."""


def _time_tag(parse: Callable[[str], Any]) -> Callable[[Any, Resolver], Any]:
    return lambda value, _resolver: parse(value)


_TAGS: dict[str, Callable[[Any, Resolver], Any]] = {
    "$tuple": lambda value, r: tuple(_decode(v, r) for v in value),
    "$set": lambda value, r: {_decode(v, r) for v in value},
    "$frozenset": lambda value, r: frozenset(_decode(v, r) for v in value),
    "$dict": lambda value, r: {_decode(k, r): _decode(v, r) for k, v in value},
    "$datetime": _time_tag(dt.datetime.fromisoformat),
    "$date": _time_tag(dt.date.fromisoformat),
    "$time": _time_tag(dt.time.fromisoformat),
    "$timedelta": lambda value, _r: dt.timedelta(days=value[0], seconds=value[1], microseconds=value[2]),
    "$decimal": lambda value, _r: decimal.Decimal(value),
    "$uuid": lambda value, _r: uuid.UUID(value),
    "$bytes": lambda value, _r: base64.b64decode(value),
    "$class": lambda value, r: r.find_class(value),
}


def _decode(value: Any, resolver: Resolver) -> Any:
    kind = type(value)
    if kind is list:
        return [_decode(item, resolver) for item in value]
    if kind is not dict:
        return value
    for tag in value:  # a tagged value has its tag first
        if not tag.startswith("$"):
            break
        if tag == "$model":
            cls = resolver.find_class(value["$model"])
            pk = tuple(_decode(p, resolver) for p in value["pk"])
            if "row" in value:
                return resolver.rebuild_model(
                    cls, pk, {k: _decode(v, resolver) for k, v in value["row"].items()}
                )
            return resolver.load_model(cls, pk)
        return _TAGS[tag](value[tag], resolver)
    return {k: _decode(v, resolver) for k, v in value.items()}


def detached_instance(cls: type, pk: tuple[Any, ...], row: dict[str, Any]) -> Any:
    """A detached instance of the mapped class *cls* holding *row*'s loaded values and primary key *pk*.

    What a resolver's ``rebuild_model`` returns for a row that is not (or
    need not be) loaded from the database: nothing is queried.
    """
    from sqlalchemy import inspect  # noqa: PLC0415 - a model reference implies SQLAlchemy
    from sqlalchemy.orm import make_transient_to_detached  # noqa: PLC0415
    from sqlalchemy.orm.attributes import set_committed_value  # noqa: PLC0415

    mapper: Any = inspect(cls)
    instance = mapper.class_manager.new_instance()
    for key, value in row.items():
        set_committed_value(instance, key, value)
    for column, value in zip(mapper.primary_key, pk, strict=False):
        prop = mapper.get_property_by_column(column)
        if prop.key not in row:
            set_committed_value(instance, prop.key, value)
    make_transient_to_detached(instance)
    return instance


def decode(payload: str, resolver: Resolver) -> tuple[Any, dict[str, Any]]:
    """Rebuild ``(sender, kwargs)`` from a payload written by :func:`encode`.

    Raises:
        ValueError: the payload is not what :func:`encode` writes (a broken row).
        LookupError: a class or model row this worker cannot provide.
    """
    data = json.loads(payload)
    if type(data) is not dict or type(data.get("kwargs")) is not dict or "sender" not in data:
        msg = f"not a job payload (expected an object with 'sender' and 'kwargs'): {payload[:200]!r}"
        raise ValueError(msg)
    try:
        return _decode(data["sender"], resolver), {k: _decode(v, resolver) for k, v in data["kwargs"].items()}
    except (KeyError, TypeError, IndexError) as exc:
        msg = f"malformed job payload ({type(exc).__name__}: {exc}): {payload[:200]!r}"
        raise ValueError(msg) from None
