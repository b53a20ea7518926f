"""The flush half of the model signals: save, delete and many-to-many.

``before_flush`` sends every ``pre_*`` signal, looping until a pass sends
nothing new, because receivers may add, edit or delete objects. The mapper
events inside the flush only *record* what SQL ran (they alone know), and
``after_flush_postexec`` sends the ``post_*`` signals from that record. A
flush's record lives in ``session.info`` and is dropped on rollback.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Table, event, inspect, select
from sqlalchemy.orm.interfaces import MANYTOONE

from tocsin._core import hooks
from tocsin.exceptions import InvalidArgumentError

from ._models import (
    _Config,
    awaiting,
    class_config,
    m2m_changed,
    post_delete,
    post_save,
    pre_delete,
    pre_save,
    raw_flag,
    session_config,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Result
    from sqlalchemy.orm import Mapper, ORMExecuteState, RelationshipProperty, Session, UOWTransaction
    from sqlalchemy.orm.state import InstanceState

_FLUSH: Final = "tocsin.sqlalchemy.flush"  # Session.info key of the running flush's _FlushState

# Many-to-many collections the user changed, by instance state: the side an
# append or remove was made on, as opposed to its backref echo.
_touched: weakref.WeakKeyDictionary[InstanceState[Any], set[str]] = weakref.WeakKeyDictionary()
_touched_lock = threading.Lock()  # sessions of several threads share it
_hooked_props: weakref.WeakSet[RelationshipProperty[Any]] = weakref.WeakSet()


class _FlushState:
    __slots__ = (
        "deleted",
        "fields",
        "m2m_posts",
        "origins",
        "orphans",
        "pre_deleted",
        "pre_saved",
        "raw",
        "written",
    )

    def __init__(self) -> None:
        self.raw = raw_flag.get()
        self.pre_saved: dict[int, Any] = {}  # id -> object (keeps the id valid)
        self.pre_deleted: dict[int, Any] = {}
        self.origins: dict[int, Any] = {}  # id of a deleted object -> the object delete() was called on
        self.orphans: dict[int, Any] = {}
        self.fields: dict[int, frozenset[str]] = {}
        self.written: list[tuple[Any, bool, frozenset[str] | None]] = []
        self.deleted: list[Any] = []
        self.m2m_posts: list[tuple[Table, dict[str, Any]]] = []


def _changed_fields(obj: Any, mapper: Mapper[Any], *, relationships: bool) -> frozenset[str]:
    """Column keys an UPDATE of *obj* would SET (Django's ``update_fields``)."""
    attrs = inspect(obj).attrs
    keys = {prop.key for prop in mapper.column_attrs if attrs[prop.key].history.has_changes()}
    if relationships:
        # A changed many-to-one only reaches its foreign key column during the flush.
        for rel in mapper.relationships:
            if rel.direction is MANYTOONE and attrs[rel.key].history.has_changes():
                keys.update(mapper.get_property_by_column(col).key for col in rel.local_columns)
    return frozenset(keys)


def _pk(obj: Any) -> Any:
    state = inspect(obj)
    if state.key is not None:
        ident: tuple[Any, ...] = tuple(state.key[1])
    else:
        mapper = state.mapper
        ident = tuple(state.dict.get(mapper.get_property_by_column(col).key) for col in mapper.primary_key)
    if any(value is None for value in ident):
        return None
    return ident[0] if len(ident) == 1 else ident


# ---- before the flush: the pre_* signals --------------------------------------


def before_flush(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    state = _FlushState()
    session.info[_FLUSH] = state
    with awaiting():
        while _send_pre_signals(session, state):
            pass


def _send_pre_signals(session: Session, state: _FlushState) -> bool:
    """Send the pre_* signals not sent yet in this flush; return whether any were."""
    # Classes whose pre_save reaches nobody (no receiver, no interceptor)
    # are skipped: asked once per class and pass, so a receiver connected by
    # another receiver is heard by the next pass.
    quiet: dict[type[Any], bool] = {}
    sent = _send_pre_save_new(session, state, quiet)
    sent = _send_pre_save_dirty(session, state, quiet) or sent
    sent = _send_pre_delete(session, state) or sent
    return _send_pre_m2m(session, state) or sent


def _send_pre_save_new(session: Session, state: _FlushState, quiet: dict[type[Any], bool]) -> bool:
    sent = False
    for obj in list(session.new):
        cls = type(obj)
        is_quiet = quiet.get(cls)
        if is_quiet is None:
            is_quiet = quiet[cls] = hooks.is_quiet(pre_save, cls)
        if is_quiet or id(obj) in state.pre_saved:
            continue
        config = session_config(session, inspect(obj).mapper)
        if config is not None:
            state.pre_saved[id(obj)] = obj
            sent = True
            pre_save.send(cls, instance=obj, raw=state.raw, using=config.alias(session), update_fields=None)
    return sent


def _send_pre_save_dirty(session: Session, state: _FlushState, quiet: dict[type[Any], bool]) -> bool:
    sent = False
    dirty = [obj for obj in session.dirty if session_config(session, inspect(obj).mapper) is not None]
    for obj in dirty:
        _collect_orphans(obj, state)
    for obj in dirty:
        if id(obj) in state.pre_saved or id(obj) in state.orphans:
            continue
        cls = type(obj)
        is_quiet = quiet.get(cls)
        if is_quiet is None:
            is_quiet = quiet[cls] = hooks.is_quiet(pre_save, cls)
        if is_quiet:
            continue
        mapper = inspect(obj).mapper
        config = session_config(session, mapper)
        assert config is not None
        fields = _changed_fields(obj, mapper, relationships=True)
        if fields:
            state.pre_saved[id(obj)] = obj
            sent = True
            pre_save.send(cls, instance=obj, raw=state.raw, using=config.alias(session), update_fields=fields)
    return sent


def _collect_orphans(obj: Any, state: _FlushState) -> None:
    """Note delete-orphan children removed from *obj*: the flush will delete them."""
    obj_state = inspect(obj)
    attrs = obj_state.attrs
    for rel in obj_state.mapper.relationships:
        if not rel.cascade.delete_orphan:
            continue
        for child in attrs[rel.key].history.deleted or ():
            child_state = inspect(child)
            if child_state.persistent and child_state.mapper._is_orphan(child_state):  # noqa: SLF001
                state.orphans[id(child)] = child
                state.origins.setdefault(id(child), obj)


def _send_pre_delete(session: Session, state: _FlushState) -> bool:
    todo = [obj for obj in [*session.deleted, *state.orphans.values()] if id(obj) not in state.pre_deleted]
    todo = [obj for obj in todo if session_config(session, inspect(obj).mapper) is not None]
    if not todo:
        return False
    for obj in todo:
        if id(obj) in state.origins:
            continue
        # The object delete() was called on is the origin of those it cascades to.
        state.origins[id(obj)] = obj
        for child, _, _, _ in inspect(obj).mapper.cascade_iterator("delete", inspect(obj)):
            state.origins.setdefault(id(child), obj)
    # Dependents first, as Django's Collector sorts the models, and each
    # model's objects by primary key, as it sorts their instances.
    models: dict[Mapper[Any], int] = {}
    for obj in todo:
        models.setdefault(inspect(obj).mapper, len(models))
    todo.sort(key=lambda obj: (_delete_rank(obj), models[inspect(obj).mapper], _pk(obj)))
    for obj in todo:
        state.pre_deleted[id(obj)] = obj
        config = session_config(session, inspect(obj).mapper)
        assert config is not None
        pre_delete.send(type(obj), instance=obj, using=config.alias(session), origin=state.origins[id(obj)])
    return True


def _delete_rank(obj: Any) -> int:
    table = inspect(obj).mapper.local_table
    tables = table.metadata.sorted_tables if isinstance(table, Table) else []
    return -tables.index(table) if table in tables else 0


def _is_reverse(prop: RelationshipProperty[Any]) -> bool:
    forward = prop.info.get("m2m_forward")
    if forward is not None:
        return not forward
    # Without a mark, the forward side is the one whose column comes first in
    # the secondary table, as in the tables Django creates for ManyToManyField.
    assert prop.secondary is not None
    columns: list[Any] = list(prop.secondary.c)
    own = min(columns.index(col) for _, col in prop.synchronize_pairs)
    other = min(columns.index(col) for _, col in prop.secondary_synchronize_pairs or ())
    return own > other


def _unsaved(prop: RelationshipProperty[Any], obj: Any, role: str) -> InvalidArgumentError:
    msg = (
        f"Cannot send m2m_changed for {prop.parent.class_.__name__}.{prop.key}: the {role} {obj!r} "
        f"has no primary key yet, so pk_set cannot be computed. Flush it first (session.flush()), "
        f"then change the collection; Django likewise refuses unsaved objects in many-to-many "
        f"relations."
    )
    return InvalidArgumentError(msg)


def _send_pre_m2m(session: Session, state: _FlushState) -> bool:
    if not _touched:  # no collection changed anywhere: skip the walk over the session
        return False
    sent = False
    for obj in [*session.new, *session.dirty]:
        istate = inspect(obj)
        with _touched_lock:
            keys = _touched.pop(istate, None)
        config = session_config(session, istate.mapper) if keys else None
        if keys and config is not None:
            for key in sorted(keys):
                sent = _send_m2m_change(session, state, config, obj, istate.mapper.relationships[key]) or sent
    return sent


def _send_m2m_change(
    session: Session, state: _FlushState, config: _Config, obj: Any, prop: RelationshipProperty[Any]
) -> bool:
    history = inspect(obj).attrs[prop.key].history
    secondary = prop.secondary
    if not (history.added or history.deleted) or not isinstance(secondary, Table):
        return False
    if hooks.is_quiet(m2m_changed, secondary):
        return False
    if _pk(obj) is None:
        raise _unsaved(prop, obj, "instance")
    actions: list[tuple[str, set[Any] | None]] = []
    if history.deleted and not history.added and not history.unchanged:
        # Emptied: Django's clear() (pk_set=None).
        actions.append(("clear", None))
    for action, objs in () if actions else (("remove", history.deleted), ("add", history.added)):
        if objs:
            pks = {_pk(o) for o in objs}
            if None in pks:
                raise _unsaved(prop, next(o for o in objs if _pk(o) is None), "value")
            actions.append((action, pks))
    base = {
        "instance": obj,
        "reverse": _is_reverse(prop),
        "model": prop.mapper.class_,
        "using": config.alias(session),
    }
    for action, pk_set in actions:
        m2m_changed.send(secondary, action=f"pre_{action}", pk_set=pk_set, **base)
        state.m2m_posts.append((secondary, {**base, "action": f"post_{action}", "pk_set": pk_set}))
    return bool(actions)


# ---- inside the flush: record what ran ----------------------------------------


def _running(target: InstanceState[Any]) -> _FlushState | None:
    session = target.session
    return session.info.get(_FLUSH) if session is not None else None


# These run once per row, with the row's InstanceState (see _listeners): a
# class whose post_* signal reaches nobody (no receiver, no interceptor) is
# not even looked up. Asked per row, so a receiver connected before the
# flush's SQL runs is heard.


def on_before_update(mapper: Mapper[Any], connection: Connection, target: InstanceState[Any]) -> None:
    if hooks.is_quiet(post_save, target.class_):
        return
    state = _running(target)
    if state is not None:
        # Again here, so that edits made by pre_save receivers count.
        obj = target.obj()
        state.fields[id(obj)] = _changed_fields(obj, mapper, relationships=False)


def on_after_insert(mapper: Mapper[Any], connection: Connection, target: InstanceState[Any]) -> None:
    if hooks.is_quiet(post_save, target.class_):
        return
    state = _running(target)
    if state is not None:
        state.written.append((target.obj(), True, None))


def on_after_update(mapper: Mapper[Any], connection: Connection, target: InstanceState[Any]) -> None:
    if hooks.is_quiet(post_save, target.class_):
        return
    state = _running(target)
    obj = target.obj()
    # No changed column (only a collection changed): no UPDATE ran, no signal.
    if state is not None and state.fields.get(id(obj)):
        state.written.append((obj, False, state.fields.pop(id(obj))))


def on_after_delete(mapper: Mapper[Any], connection: Connection, target: InstanceState[Any]) -> None:
    if hooks.is_quiet(post_delete, target.class_):
        return
    state = _running(target)
    if state is not None:
        state.deleted.append(target.obj())


# ---- after the flush: the post_* signals --------------------------------------


def after_flush_postexec(session: Session, flush_context: UOWTransaction) -> None:
    state: _FlushState | None = session.info.pop(_FLUSH, None)
    if state is None:
        return
    with awaiting():
        _send_post_signals(session, state)


def _send_post_signals(session: Session, state: _FlushState) -> None:
    for obj, created, fields in state.written:
        config = session_config(session, inspect(obj).mapper)
        if config is not None:
            post_save.send(
                type(obj),
                instance=obj,
                created=created,
                update_fields=fields,
                raw=state.raw,
                using=config.alias(session),
            )
    # Django's Collector reverses each model's instances before deleting them
    # (the models keep their order).
    order = {key: i for i, key in enumerate(state.pre_deleted)}
    models: dict[Mapper[Any], int] = {}
    for obj in state.pre_deleted.values():
        models.setdefault(inspect(obj).mapper, len(models))
    state.deleted.sort(
        key=lambda obj: (_delete_rank(obj), models.get(inspect(obj).mapper, -1), -order.get(id(obj), -1))
    )
    for obj in state.deleted:
        config = session_config(session, inspect(obj).mapper)
        if config is not None:
            origin = state.origins.get(id(obj), obj)
            post_delete.send(type(obj), instance=obj, using=config.alias(session), origin=origin)
    for secondary, kwargs in state.m2m_posts:
        m2m_changed.send(secondary, **kwargs)


def after_soft_rollback(session: Session, previous_transaction: object) -> None:
    session.info.pop(_FLUSH, None)


# ---- many-to-many tracking ------------------------------------------------------


def on_configured(mapper: Mapper[Any], cls: type[Any]) -> None:
    if class_config(mapper) is not None:
        hook_m2m(mapper)


def hook_m2m(mapper: Mapper[Any]) -> None:
    """Listen for appends and removes on *mapper*'s many-to-many collections."""
    for prop in mapper.relationships:
        if prop.secondary is None or prop in _hooked_props:
            continue
        _hooked_props.add(prop)
        attribute = getattr(prop.parent.class_, prop.key)

        def touched(
            target: Any, value: Any, initiator: Any, *, _prop: RelationshipProperty[Any] = prop
        ) -> None:
            # A backref echo carries the initiator of the side the user touched.
            if initiator is None or initiator.impl.parent_token is _prop:
                with _touched_lock:
                    _touched.setdefault(inspect(target), set()).add(_prop.key)

        for name in ("append", "remove"):
            event.listen(attribute, name, touched, propagate=True)


# ---- ORM delete() statements ------------------------------------------------------


def on_orm_execute(orm_state: ORMExecuteState) -> Result[Any] | None:
    if not orm_state.is_delete:
        return None
    mapper = orm_state.bind_mapper
    if mapper is None:
        return None
    session = orm_state.session
    config: _Config | None = session_config(session, mapper)
    cls = mapper.class_
    if (
        config is None
        or not config.delete_statements
        or not (pre_delete.has_listeners(cls) or post_delete.has_listeners(cls))
    ):
        return None
    statement: Any = orm_state.statement
    query = select(cls).order_by(*mapper.primary_key)
    if statement.whereclause is not None:
        query = query.where(statement.whereclause)
    # Like QuerySet.delete() (Django's Collector.delete): fetch the rows,
    # pre_delete each in primary key order, delete, post_delete each in the
    # reverse order. Sorted here too: Django sorts in Python, and a column's
    # collation may order text keys otherwise in the database.
    rows = sorted(session.scalars(query, params=orm_state.parameters or None), key=_pk)
    using = config.alias(session)
    with awaiting():
        for obj in rows:
            pre_delete.send(type(obj), instance=obj, using=using, origin=statement)
    result = orm_state.invoke_statement()
    with awaiting():
        for obj in reversed(rows):
            post_delete.send(type(obj), instance=obj, using=using, origin=statement)
    return result
