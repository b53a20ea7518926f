"""Rebuilding a remote send's classes and model instances, from what this process already has.

Nothing is ever imported because a message names it: a class resolves only
to a sender class of a connection on a shared signal (or one given to
``share(senders=...)``) or to a mapped SQLAlchemy class (a registered model).
A model instance is loaded fresh through ``Bus(sessions=...)`` when given;
otherwise it is rebuilt detached, holding only its primary key (enough to
evict a cache entry; other attributes raise ``DetachedInstanceError``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from tocsin.background import _payload
from tocsin.background._runner import _mapped_classes  # the same rule as a worker's

__all__ = ["Resolver"]


class Resolver:
    """``background._payload.Resolver`` for one received message."""

    def __init__(self, classes: Callable[[], Iterable[type]], sessions: Callable[[], Any] | None) -> None:
        self.classes = classes  # called only when a message names a class
        self.sessions = sessions
        self.session: Any = None

    def find_class(self, name: str) -> type:
        found = next((cls for cls in self.classes() if _payload.class_name(cls) == name), None)
        if found is None and sys.modules.get("sqlalchemy.orm") is not None:
            found = _mapped_classes().get(name)
        if found is None:
            msg = (
                f"class {name} is neither a sender of a shared signal's connections nor a mapped "
                f"SQLAlchemy class here (classes are never imported because a message names them)"
            )
            raise LookupError(msg)
        return found

    def load_model(self, cls: type, pk: tuple[Any, ...]) -> Any:
        if self.sessions is None:
            return self.rebuild_model(cls, pk, {})
        if self.session is None:
            self.session = self.sessions()
        instance = self.session.get(cls, pk if len(pk) > 1 else pk[0])
        if instance is None:
            msg = f"{cls.__module__}.{cls.__qualname__} with primary key {pk!r} does not exist here"
            raise LookupError(msg)
        return instance

    def rebuild_model(self, cls: type, pk: tuple[Any, ...], row: dict[str, Any]) -> Any:
        return _payload.detached_instance(cls, pk, row)

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()
