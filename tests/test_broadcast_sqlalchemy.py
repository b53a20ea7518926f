"""tocsin.broadcast and SQLAlchemy transactions: publish after COMMIT, never after ROLLBACK.

On every database of the suite (SQLite in memory and in a file, PostgreSQL),
over ``memory://`` and over PostgreSQL LISTEN/NOTIFY. "Reaches nobody" is
proven by a later committed send arriving alone: one publisher's messages
arrive in order.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from test_broadcast import Node
from tocsin.sqlalchemy import use_session

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Engine

_names = itertools.count()


class Base(DeclarativeBase):
    pass


class Post(Base):
    __tablename__ = "broadcast_post"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))


@pytest.fixture(name="bus_url", params=["memory", "postgresql"])
def _bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"memory://sqlalchemy-{next(_names)}"


@pytest.fixture(name="nodes")
def _nodes(bus_url: str, engine: Engine) -> Iterator[Callable[..., Node]]:
    Base.metadata.create_all(engine)
    made: list[Node] = []
    channel = f"tocsin_test_{next(_names)}"  # the PostgreSQL server is shared by the whole run

    def make(**options: Any) -> Node:
        node = Node(bus_url, channel=channel, **options)
        made.append(node)
        assert node.bus.start()
        return node

    yield make
    for node in made:
        node.close()


def test_published_after_commit_never_after_rollback(nodes: Callable[..., Node], engine: Engine) -> None:
    a, b = nodes(), nodes()
    with Session(engine) as session:
        post = Post(id=1, title="draft")
        session.add(post)
        session.flush()
        a.signal.send(Post, instance=post)
        assert len(a.inbox.calls) == 1  # local receivers run at once, as always
        assert a.bus.status.buffered == 0  # nothing queued before COMMIT
        session.rollback()
    with Session(engine) as session:
        post = Post(id=2, title="kept")
        session.add(post)
        session.flush()
        a.signal.send(Post, instance=post)
        assert a.bus.status.buffered + a.bus.status.published == 0
        session.commit()
    b.inbox.wait_count(1)
    assert a.bus.flush()
    assert a.bus.status.published == 1
    sender, kwargs = b.inbox.calls[0]
    assert sender is Post
    received = kwargs["instance"]
    assert type(received) is Post
    assert received.id == 2  # without Bus(sessions=...): detached, primary key only


def test_a_rolled_back_savepoint_drops_its_sends(nodes: Callable[..., Node], engine: Engine) -> None:
    a, b = nodes(), nodes()
    with Session(engine) as session, use_session(session):
        session.add(Post(id=1, title="x"))
        session.flush()
        nested = session.begin_nested()
        a.signal.send(None, post_id=1)  # deferred to the Session's transaction by use_session()
        nested.rollback()
        a.signal.send(None, post_id=2)
        session.commit()
    b.inbox.wait_count(1)
    a.bus.flush()
    assert b.inbox.values("post_id") == [2]
    assert a.bus.status.published == 1


def test_sessions_load_remote_instances_fresh(
    bus_url: str, engine: Engine, db_url: str, nodes: Callable[..., Node]
) -> None:
    if db_url.startswith("sqlite+pysqlite://") and db_url.endswith("://"):
        pytest.skip("an in-memory SQLite database is private to one connection: no other thread sees it")
    a, b = nodes(), nodes(sessions=sessionmaker(engine))
    with Session(engine) as session:
        post = Post(id=3, title="fresh")
        session.add(post)
        session.commit()
        a.signal.send(Post, instance=post)  # no transaction open: published at once
    b.inbox.wait_count(1)
    assert b.inbox.calls[0][1]["instance"].title == "fresh"
