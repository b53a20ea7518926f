"""After-commit delivery with tocsin.sqlalchemy, on a SQLite file.

Shows: on_commit with a savepoint rolled back, a post_save receiver deferred
``via=on_commit``, send_on_commit, and capture_on_commit_callbacks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import tocsin
import tocsin.sqlalchemy as ts


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


ts.install(Base)  # model signals for Base's classes
tmp = tempfile.TemporaryDirectory()
# A file, not ":memory:": there every Session of a thread shares one connection.
engine = create_engine(f"sqlite:///{Path(tmp.name) / 'shop.db'}")


# sqlite3 starts transactions lazily, so a SAVEPOINT would not nest; let
# SQLAlchemy send BEGIN itself (SQLAlchemy's documented recipe).
@event.listens_for(engine, "connect")
def _connect(dbapi_connection, connection_record):
    dbapi_connection.isolation_level = None


@event.listens_for(engine, "begin")
def _begin(conn):
    conn.exec_driver_sql("BEGIN")


Base.metadata.create_all(engine)
log: list[str] = []


@tocsin.receiver(ts.post_save, sender=Order, via=ts.on_commit)
def email_customer(sender, instance, created, **kwargs):
    log.append(f"email for order {instance.id} ({'new' if created else 'changed'})")


def committed():
    """What another connection sees: only committed rows."""
    with Session(engine) as s:
        return s.scalars(select(Order.id)).all()


order_shipped = tocsin.Signal(name="order_shipped")


@order_shipped.connect
def notify_warehouse(sender, order_id, **kwargs):
    log.append(f"warehouse told about order {order_id}")


with Session(engine) as session:
    with session.begin():
        session.add(Order(id=1, item="book"))
        session.flush()  # post_save is sent here; email_customer waits for the commit
        ts.on_commit(lambda: log.append(f"committed orders: {committed()}"), session=session)
        savepoint = session.begin_nested()
        session.add(Order(id=2, item="lamp"))
        ts.on_commit(lambda: log.append("never: its savepoint rolls back"), session=session)
        savepoint.rollback()  # drops order 2 and the callback registered with it
        ts.send_on_commit(order_shipped, Order, session, order_id=1)
        assert log == []  # nothing before the commit
    print("\n".join(log))
    assert log == ["email for order 1 (new)", "committed orders: [1]", "warehouse told about order 1"]

    # A rollback drops everything registered in the transaction.
    log.clear()
    session.add(Order(id=3, item="pen"))
    session.flush()  # post_save fires here; its receiver waits for the commit
    session.rollback()
    assert log == []

    # In tests whose transaction never commits, capture the callbacks instead.
    with ts.capture_on_commit_callbacks(session, execute=True) as callbacks:
        session.add(Order(id=4, item="cup"))
        session.flush()
    assert len(callbacks) == 1
    assert log == ["email for order 4 (new)"]
    session.rollback()
    assert committed() == [1]
engine.dispose()
tmp.cleanup()
print("ok")
