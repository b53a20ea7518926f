"""tocsin.background with SQLAlchemy: the transactional outbox and model instances.

On a real SQLite file and PostgreSQL (the `engine` fixture; in-memory SQLite
is skipped: a job table must be shared with a worker).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import tocsin
import tocsin.sqlalchemy as ts
from tocsin.background import Jobs, PayloadError
from tocsin.sqlalchemy import use_session

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Engine

changed = tocsin.Signal(name="changed")
seen: list[dict[str, Any]] = []


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "jobs_doc"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))


def note(sender, **kwargs):
    seen.append({"sender": sender, **kwargs})


def note_title(sender, instance, **kwargs):
    seen.append(
        {"title": instance.title, "id": instance.id, "session": kwargs.get("job") and _session_of(instance)}
    )


def _session_of(instance: Any) -> Any:
    from sqlalchemy.orm import object_session

    return object_session(instance)


@pytest.fixture(name="db", params=["sqlite-file", "postgresql"])
def _db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file or PostgreSQL (not in-memory SQLite: a job table is shared with workers)."""
    from sqlalchemy import create_engine
    from tests.conftest import _url_for, nested_sqlite

    urls = _url_for(request.param, request, tmp_path, driver="pysqlite")
    engine = nested_sqlite(create_engine(next(urls)))
    seen.clear()
    ts.install(Base)
    Base.metadata.create_all(engine)
    yield engine
    for signal in (changed, ts.post_save, ts.post_delete):
        for connection in signal.connections():
            if connection.receiver in (note, note_title, rename, explode):
                signal.disconnect(connection.receiver, connection.sender)
    Base.metadata.drop_all(engine)
    engine.dispose()
    next(urls, None)


@pytest.fixture(name="jobs")
def _jobs(db: Engine) -> Iterator[Jobs]:
    jobs = Jobs(db)
    jobs.store.ensure_schema()
    yield jobs
    jobs.close()


class TestOutbox:
    def test_commit_makes_the_job_durable_rollback_removes_it(self, db, jobs):
        changed.connect(note, via=jobs.later())
        with Session(db) as session, use_session(session):
            session.begin()
            changed.send("a", n=1)
            session.commit()
            session.begin()
            changed.send("b", n=2)
            session.rollback()
        assert jobs.run_pending() == 1
        assert [entry["n"] for entry in seen] == [1]

    def test_the_job_is_invisible_before_commit(self, db, jobs):
        """Written in the Session's transaction: no worker can claim it before COMMIT."""
        changed.connect(note, via=jobs.later())
        with Session(db) as session, use_session(session):
            session.begin()
            session.add(Doc(id=1, title="x"))
            session.flush()
            changed.send("a", n=1)
            other = threading.Thread(target=lambda: seen.append({"pending": jobs.run_pending()}))
            other.start()
            other.join()
            session.commit()
        assert seen == [{"pending": 0}]
        assert jobs.run_pending() == 1

    def test_savepoints(self, db, jobs):
        """A rolled-back SAVEPOINT removes its jobs; a released one keeps them."""
        changed.connect(note, via=jobs.later())
        with Session(db) as session, use_session(session):
            session.begin()
            with session.begin_nested():
                changed.send("kept", n=1)
            nested = session.begin_nested()
            changed.send("dropped", n=2)
            nested.rollback()
            session.commit()
        jobs.run_pending()
        assert [entry["n"] for entry in seen] == [1]

    def test_a_new_job_table_is_created_once_per_transaction_not_per_send(self, db):
        """Until a transaction that created the table commits, each transaction creates it once."""
        from sqlalchemy import event, text

        jobs = Jobs(db, table="fresh_jobs")
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        event.listen(db, "before_cursor_execute", record)
        try:
            changed.connect(note, via=jobs.later())
            with Session(db) as session, use_session(session):
                session.begin()
                nested = session.begin_nested()
                changed.send("dropped", n=0)  # creates the table in the SAVEPOINT,
                nested.rollback()  # which takes it away again
                for n in range(1, 4):
                    changed.send("kept", n=n)
                session.commit()
            event.remove(db, "before_cursor_execute", record)
            created = [s for s in statements if s.startswith("CREATE TABLE")]
            if db.dialect.name == "postgresql":
                assert len(created) == 1  # once, on a connection of its own (see the next test)
            else:
                assert len(created) == 2  # in the SAVEPOINT, then in the transaction: not once per send
            assert jobs.run_pending() == 3
            assert sorted(entry["n"] for entry in seen) == [1, 2, 3]
        finally:
            if event.contains(db, "before_cursor_execute", record):
                event.remove(db, "before_cursor_execute", record)
            jobs.close()
            with db.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS fresh_jobs"))

    def test_where_a_send_creates_the_job_table(self, db):
        """PostgreSQL: on a connection of its own. Two transactions creating a table at once: the second
        fails (a unique violation in pg_type), aborting whatever else it did, and a worker or relay starting
        on a new database races the first send. SQLite: in the sender's transaction (DDL on another
        connection would wait for it to end)."""
        from sqlalchemy import event, text

        jobs = Jobs(db, table="fresh_jobs")
        ddl_on: list[Any] = []

        def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("CREATE"):
                ddl_on.append(conn.connection.dbapi_connection)

        changed.connect(note, via=jobs.later())
        try:
            with Session(db) as session, use_session(session):
                session.begin()
                mine = session.connection().connection.dbapi_connection
                event.listen(db, "before_cursor_execute", record)
                changed.send("a", n=1)
                event.remove(db, "before_cursor_execute", record)
                session.commit()
            assert ddl_on
            if db.dialect.name == "postgresql":
                assert mine not in ddl_on
            else:
                assert set(ddl_on) == {mine}
            assert jobs.run_pending() == 1
        finally:
            if event.contains(db, "before_cursor_execute", record):
                event.remove(db, "before_cursor_execute", record)
            jobs.close()
            with db.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS fresh_jobs"))

    def test_outside_a_transaction_the_job_is_written_at_once(self, db, jobs):
        changed.connect(note, via=jobs.later())
        changed.send("a", n=1)
        assert len(jobs.list()) == 1


class TestProtocolOnEachDatabase:
    def test_keys_retries_dead_letters_retry_purge(self, db, jobs):
        """The claim protocol's statements on this database: key upsert, requeue, dead letter, replay."""
        changed.connect(note, via=jobs.later(key="k"))
        changed.connect(explode, via=jobs.later(retries=1, backoff=0))
        with Session(db) as session, use_session(session):
            session.begin()
            changed.send("a", n=1)
            changed.send("a", n=2)
            session.commit()
        assert sorted(job.receiver.rsplit(":", 1)[1] for job in jobs.list()) == ["explode", "explode", "note"]
        assert jobs.run_pending() == 5  # note once (n=2), explode twice for each of its 2 jobs
        assert [entry["n"] for entry in seen if "n" in entry and entry.get("kind") != "explode"] == [2]
        failed = jobs.failed()
        assert len(failed) == 2
        assert all("ValueError: boom" in (job.last_error or "") for job in failed)
        assert jobs.retry([failed[0].id]) == 1
        assert jobs.purge([failed[1].id]) == 1
        assert [job.state for job in jobs.list()] == ["queued"]


class TestSeparateStore:
    def test_written_after_commit_dropped_by_rollback(self, db, tmp_path):
        """The embedded store beside another database: the job is written by on_commit."""
        jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}")
        try:
            changed.connect(note, via=jobs.later())
            with Session(db) as session, use_session(session):
                session.begin()
                changed.send("a", n=1)
                assert jobs.list() == []  # not before COMMIT
                session.commit()
                assert len(jobs.list()) == 1
                session.begin()
                changed.send("b", n=2)
                session.rollback()
            assert jobs.run_pending() == 1
            assert [entry["n"] for entry in seen] == [1]
        finally:
            jobs.close()

    def test_model_instances_need_sessions(self, db, tmp_path):
        jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}")
        try:
            changed.connect(note, via=jobs.later())
            with Session(db) as session:
                doc = Doc(id=1, title="x")
                session.add(doc)
                session.commit()
                with pytest.raises(PayloadError, match=r"has no sessions= to load it in the worker"):
                    changed.send("a", instance=doc)
        finally:
            jobs.close()


class TestModels:
    def test_post_save_instance_is_loaded_fresh(self, db, jobs):
        """The worker loads the row as it is when the job runs, in a Session of its own."""
        ts.post_save.connect(note_title, sender=Doc, via=jobs.later())
        maker = sessionmaker(db)
        with maker.begin() as session:
            session.add(Doc(id=1, title="first"))
        with maker.begin() as session:
            session.get(Doc, 1).title = "second"  # type: ignore[union-attr]
        assert jobs.run_pending() == 2
        assert [(entry["id"], entry["title"]) for entry in seen] == [(1, "second"), (1, "second")]
        assert all(entry["session"] is not None for entry in seen)

    def test_post_delete_instance_is_a_snapshot(self, db, jobs):
        """A deleted row cannot be loaded: the worker gets its values as they were at send time."""
        maker = sessionmaker(db)
        with maker.begin() as session:
            session.add(Doc(id=1, title="gone"))
        ts.post_delete.connect(note_title, sender=Doc, via=jobs.later())
        with maker.begin() as session:
            session.delete(session.get(Doc, 1))
        assert jobs.run_pending() == 1
        assert [(entry["id"], entry["title"], entry["session"]) for entry in seen] == [(1, "gone", None)]

    def test_a_row_deleted_before_the_run_is_a_dead_letter(self, db, jobs):
        maker = sessionmaker(db)
        ts.post_save.connect(note_title, sender=Doc, via=jobs.later())
        with maker.begin() as session:
            session.add(Doc(id=1, title="x"))
        with maker.begin() as session:
            session.delete(session.get(Doc, 1))
        assert jobs.run_pending() == 1
        [dead] = jobs.failed()
        assert "no longer exists" in (dead.last_error or "")
        assert seen == []

    def test_receiver_changes_are_committed(self, db, jobs):
        """The Session that loaded the instance is committed when the receiver returns."""
        changed.connect(rename, via=jobs.later())
        maker = sessionmaker(db)
        with maker.begin() as session:
            doc = Doc(id=1, title="x")
            session.add(doc)
            session.flush()
            changed.send("a", instance=doc)
        assert jobs.run_pending() == 1
        assert jobs.list() == []
        with maker() as session:
            assert session.get(Doc, 1).title == "renamed"  # type: ignore[union-attr]


def explode(sender, **kwargs):
    seen.append({"kind": "explode"})
    msg = "boom"
    raise ValueError(msg)


def rename(sender, instance, **kwargs):
    instance.title = "renamed"
