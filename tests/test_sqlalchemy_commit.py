"""on_commit on real SQLite (memory, file) and PostgreSQL, sync Sessions."""

from __future__ import annotations

import functools
import logging
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import tocsin
from tocsin.sqlalchemy import (
    SessionNotFoundError,
    capture_on_commit_callbacks,
    on_commit,
    send_on_commit,
    send_robust_on_commit,
    use_session,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Engine


# A transaction's body: "add" (a row and its callback) or (release?, body) for a savepoint.
BLOCKS = st.recursive(
    st.lists(st.just("add"), max_size=2),
    lambda inner: st.lists(st.one_of(st.just("add"), st.tuples(st.booleans(), inner)), max_size=4),
    max_leaves=12,
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "commit_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


@pytest.fixture(name="maker")
def _maker(engine: Engine) -> Iterator[sessionmaker[Session]]:
    Base.metadata.create_all(engine)
    yield sessionmaker(engine)
    Base.metadata.drop_all(engine)


def names(maker: sessionmaker[Session]) -> list[str]:
    """The committed rows, read through a new Session (a new transaction)."""
    with maker() as s:
        return sorted(s.scalars(select(Item.name)))


class TestCommitAndRollback:
    def test_runs_after_commit_and_can_use_the_database(self, maker):
        seen = []
        with maker() as session:
            with session.begin():
                session.add(Item(name="a"))
                on_commit(lambda: seen.append(names(maker)), session=session)
                session.flush()
                assert seen == []
            assert seen == [["a"]]

    def test_callback_may_use_the_same_session(self, maker):
        with maker() as session:
            session.add(Item(name="a"))
            session.flush()

            def add_b():
                session.add(Item(name="b"))
                session.commit()

            on_commit(add_b, session=session)
            session.commit()
            assert not session.in_transaction()
        assert names(maker) == ["a", "b"]

    def test_rollback_drops(self, maker):
        seen = []
        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            on_commit(lambda: seen.append(1), session=session)
            session.rollback()
            session.commit()  # a later, empty transaction
        assert seen == []
        assert names(maker) == []

    def test_close_without_commit_drops(self, maker):
        seen = []
        session = maker()
        session.add(Item(name="a"))
        session.flush()
        on_commit(lambda: seen.append(1), session=session)
        session.close()
        assert seen == []

    def test_outside_a_transaction_runs_at_once(self, maker):
        seen = []
        with maker() as session:
            assert not session.in_transaction()
            on_commit(lambda: seen.append(1), session=session)
            assert seen == [1]

    def test_add_alone_begins_the_transaction(self, maker):
        """SQLAlchemy 2.x autobegins on add(): a callback registered after it waits for the commit."""
        seen = []
        with maker() as session:
            session.add(Item(name="a"))
            assert session.in_transaction()
            on_commit(lambda: seen.append("after a rollback"), session=session)
            assert seen == []
            session.rollback()  # drops it with the pending row
            session.add(Item(name="b"))
            on_commit(lambda: seen.append(names(maker)), session=session)
            assert seen == []
            session.commit()
        assert seen == [["b"]]

    def test_session_subclass(self, maker):
        class MySession(Session):
            pass

        seen = []
        with MySession(maker.kw["bind"]) as session:
            session.add(Item(name="a"))
            session.flush()
            on_commit(lambda: seen.append(1), session=session)
            session.commit()
        assert seen == [1]

    def test_fifo_order_and_only_once(self, maker):
        seen = []
        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            for i in range(5):
                on_commit(functools.partial(seen.append, i), session=session)
            session.commit()
            session.add(Item(name="b"))
            session.commit()
        assert seen == [0, 1, 2, 3, 4]


class TestSavepoints:
    def test_djangos_example(self, maker):
        """foo survives; bar, registered in the rolled-back savepoint, does not."""
        seen = []
        with maker() as session, session.begin():
            session.add(Item(name="outer"))
            on_commit(lambda: seen.append("foo"), session=session)
            try:
                with session.begin_nested():
                    session.add(Item(name="inner"))
                    on_commit(lambda: seen.append("bar"), session=session)
                    raise KeyError  # abort the savepoint
            except KeyError:
                pass
        assert seen == ["foo"]
        assert names(maker) == ["outer"]

    def test_released_savepoint_keeps_callbacks(self, maker):
        seen = []
        with maker() as session, session.begin():
            with session.begin_nested():
                session.add(Item(name="a"))
                on_commit(lambda: seen.append("a"), session=session)
            assert seen == []
        assert seen == ["a"]
        assert names(maker) == ["a"]

    def test_inner_released_savepoint_inside_rolled_back_one(self, maker):
        seen = []
        with maker() as session, session.begin():
            outer = session.begin_nested()
            on_commit(lambda: seen.append("outer"), session=session)
            with session.begin_nested():
                session.add(Item(name="inner"))
                on_commit(lambda: seen.append("inner"), session=session)
            outer.rollback()
            session.add(Item(name="kept"))
            on_commit(lambda: seen.append("after"), session=session)
        assert seen == ["after"]
        assert names(maker) == ["kept"]

    def test_sibling_savepoints(self, maker):
        seen = []
        with maker() as session, session.begin():
            first = session.begin_nested()
            on_commit(lambda: seen.append(1), session=session)
            first.rollback()
            with session.begin_nested():
                on_commit(lambda: seen.append(2), session=session)
        assert seen == [2]

    def test_failed_flush_drops_only_its_savepoint(self, maker):
        """An IntegrityError rolls back the enclosing SAVEPOINT: its callbacks go."""
        seen = []
        with maker() as session, session.begin():
            session.add(Item(name="a"))
            on_commit(lambda: seen.append("outer"), session=session)
            try:
                with session.begin_nested():
                    on_commit(lambda: seen.append("inner"), session=session)
                    session.add(Item(name="a"))  # duplicate
                    session.flush()
            except IntegrityError:
                pass
        assert seen == ["outer"]
        assert names(maker) == ["a"]


class TestErrors:
    def test_exception_propagates_and_skips_the_rest(self, maker):
        seen = []

        def boom():
            raise ValueError("boom")

        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            on_commit(lambda: seen.append(1), session=session)
            on_commit(boom, session=session)
            on_commit(lambda: seen.append(3), session=session)
            with pytest.raises(ValueError, match=r"^boom$"):
                session.commit()
            assert seen == [1]
            # committed, and the Session is usable with no callbacks left over
            session.add(Item(name="b"))
            session.commit()
        assert seen == [1]
        assert names(maker) == ["a", "b"]

    def test_robust_logs_and_continues(self, maker, caplog):
        seen = []

        def boom():
            raise ValueError("boom")

        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            on_commit(boom, session=session, robust=True)
            on_commit(lambda: seen.append(2), session=session)
            with caplog.at_level(logging.ERROR, logger="tocsin"):
                session.commit()
        assert seen == [2]
        [record] = caplog.records
        assert record.name == "tocsin"
        assert record.levelno == logging.ERROR
        assert record.getMessage() == (  # Django's run_and_clear_commit_hooks() line
            "Error calling TestErrors.test_robust_logs_and_continues.<locals>.boom in on_commit() "
            "during transaction (boom)."
        )
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], ValueError)

    def test_robust_logs_on_every_commit(self, maker, caplog):
        """Each commit logs its own failures: the first and the later ones alike."""

        def boom(n):
            raise ValueError(f"boom {n}")

        caplog.set_level(logging.ERROR, logger="tocsin")
        with maker() as session:
            for n in range(3):
                session.add(Item(name=f"item{n}"))
                session.flush()
                on_commit(functools.partial(boom, n), session=session, robust=True)
                session.commit()
                [record] = caplog.records
                # The function's name, not "functools.partial(...)".
                assert record.getMessage() == (
                    "Error calling TestErrors.test_robust_logs_on_every_commit.<locals>.boom in "
                    f"on_commit() during transaction (boom {n})."
                )
                caplog.clear()

    def test_robust_without_transaction_logs_as_django(self, maker, caplog):
        """No transaction open: the callback runs at once; Django's on_commit() line."""

        def boom():
            raise ValueError("boom")

        caplog.set_level(logging.ERROR, logger="tocsin")
        with maker() as session:
            for _ in range(2):
                on_commit(boom, session=session, robust=True)
                [record] = caplog.records
                assert record.getMessage() == (
                    "Error calling TestErrors.test_robust_without_transaction_logs_as_django.<locals>.boom "
                    "in on_commit() (boom)."
                )
                caplog.clear()

    def test_not_callable(self, maker):
        with pytest.raises(TypeError, match="needs a callable"):
            on_commit(42, session=maker())  # type: ignore[arg-type]

    def test_no_session(self):
        with pytest.raises(SessionNotFoundError, match="cannot tell which Session"):
            on_commit(lambda: None)

    def test_async_callback_in_a_sync_session(self, maker):
        async def later():
            pass

        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            on_commit(later, session=session)
            with pytest.raises(TypeError, match="returned an awaitable"):
                session.commit()


class TestSessionLookup:
    def test_use_session(self, maker):
        seen = []
        with maker() as session, use_session(session) as current:
            assert current is session
            session.add(Item(name="a"))
            session.flush()
            on_commit(lambda: seen.append(1))
            assert seen == []
            session.commit()
        assert seen == [1]

    def test_explicit_session_wins_over_use_session(self, maker):
        seen = []
        with maker() as other, maker() as session, use_session(other):
            session.add(Item(name="a"))
            session.flush()
            on_commit(lambda: seen.append(1), session=session)
            other.commit()
            assert seen == []
            session.commit()
        assert seen == [1]

    def test_scoped_session(self, maker):
        from sqlalchemy.orm import scoped_session

        seen = []
        scoped = scoped_session(maker)
        try:
            scoped.add(Item(name="a"))
            scoped.flush()
            on_commit(lambda: seen.append(1), session=scoped)
            scoped.commit()
        finally:
            scoped.remove()
        assert seen == [1]


class TestAsPolicy:
    def test_via_on_commit_finds_the_session_of_instance(self, maker):
        saved = tocsin.Signal()
        seen = []

        @tocsin.receiver(saved, sender=Item, via=on_commit)
        def index(sender, instance, **kwargs):
            seen.append(names(maker))
            return "indexed"

        with maker() as session:
            item = Item(name="a")
            session.add(item)
            session.flush()
            [(receiver, response)] = saved.send(Item, instance=item)
            assert receiver is index
            assert isinstance(response, tocsin.Deferred)
            assert seen == []
            session.commit()
        assert seen == [["a"]]

    def test_trace_shows_the_run_after_commit(self, maker):
        """tocsin.trace() reports the on_commit run as a deferred event of the send."""
        saved = tocsin.Signal(name="saved")

        @tocsin.receiver(saved, sender=Item, via=on_commit)
        def index(sender, instance, **kwargs):
            return names(maker)

        with tocsin.trace(level=None) as t, maker() as session:
            item = Item(name="a")
            session.add(item)
            session.flush()
            saved.send(Item, instance=item)
            assert t.sends[0].deferred == []
            session.commit()
        [run] = t.sends[0].deferred
        assert run.receiver is index
        assert run.result == ["a"]
        assert run.start > t.sends[0].end

    @pytest.mark.parametrize("commit_with", ["context manager", "commit()"])
    def test_deferred_receiver_reads_expired_attributes(self, maker, commit_with):
        """The commit expired the instance; the receiver reloads it on its Session."""
        saved = tocsin.Signal()
        seen = []

        @tocsin.receiver(saved, via=on_commit)
        def index(sender, instance, **kwargs):
            seen.append(instance.name)

        with maker() as session:
            if commit_with == "commit()":
                item = Item(name="a")
                session.add(item)
                session.flush()
                saved.send(Item, instance=item)
                session.commit()
            else:
                with session.begin():
                    item = Item(name="a")
                    session.add(item)
                    session.flush()
                    saved.send(Item, instance=item)
            assert seen == ["a"]
            # the reload began a new transaction on the Session; it still works
            session.add(Item(name="b"))
            session.commit()
        assert names(maker) == ["a", "b"]

    def test_robust_policy_with_partial(self, maker, caplog):
        saved = tocsin.Signal()

        @tocsin.receiver(saved, via=functools.partial(on_commit, robust=True))
        def broken(sender, **kwargs):
            raise ValueError("broken")

        with maker() as session:
            item = Item(name="a")
            session.add(item)
            session.flush()
            saved.send(Item, instance=item)
            with caplog.at_level(logging.ERROR, logger="tocsin"):
                session.commit()
        [record] = caplog.records
        assert record.getMessage() == (  # names the receiver, not the deferred call
            "Error calling TestAsPolicy.test_robust_policy_with_partial.<locals>.broken in "
            "on_commit() during transaction (broken)."
        )

    def test_model_post_save_via_on_commit(self, maker):
        ts = pytest.importorskip("tocsin.sqlalchemy")

        class ModelBase(DeclarativeBase):
            pass

        class Order(ModelBase):
            __tablename__ = "commit_order"
            id: Mapped[int] = mapped_column(primary_key=True)

        ts.install(ModelBase)
        engine = maker.kw["bind"]
        ModelBase.metadata.create_all(engine)
        seen = []

        @tocsin.receiver(ts.post_save, sender=Order, via=on_commit)
        def notify(sender, instance, created, **kwargs):
            # Not instance.id: commit expired it, and reloading it would begin a
            # transaction on the committed Session, which an in-memory SQLite
            # database shares with this new one.
            with maker() as s:
                seen.append((created, s.get(Order, 2) is not None))

        try:
            with maker() as session:
                session.add(Order(id=1))
                session.flush()
                assert seen == []
                session.rollback()
                session.add(Order(id=2))
                session.commit()
            assert seen == [(True, True)]
        finally:
            ModelBase.metadata.drop_all(engine)


class TestSendOnCommit:
    def test_sends_after_commit_to_receivers_connected_meanwhile(self, maker):
        sig = tocsin.Signal()
        seen = []
        with maker() as session:
            item = Item(name="a")
            session.add(item)
            session.flush()
            send_on_commit(sig, Item, instance=item, extra=1)

            @sig.connect
            def late(sender, instance, extra, **kwargs):
                seen.append((sender, instance.name, extra))

            assert seen == []
            session.commit()
        assert seen == [(Item, "a", 1)]

    def test_rollback_drops_the_send(self, maker):
        sig = tocsin.Signal()
        seen = []

        @sig.connect
        def rec(sender, **kwargs):
            seen.append(sender)

        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            send_on_commit(sig, "x", session)
            session.rollback()
        assert seen == []

    def test_robust_uses_send_robust(self, maker, caplog):
        sig = tocsin.Signal()
        seen = []

        @sig.connect
        def broken(sender, **kwargs):
            raise ValueError("broken")

        @sig.connect
        def fine(sender, **kwargs):
            seen.append(sender)

        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            send_robust_on_commit(sig, "x", session)
            with caplog.at_level(logging.ERROR, logger="tocsin"):
                session.commit()
        assert seen == ["x"]
        assert len(caplog.records) == 1

    def test_every_name_is_the_senders(self, maker):
        """session=, robust= and using= are the signal's arguments: the options are positional only."""
        sig = tocsin.Signal()
        seen = []

        @sig.connect
        def rec(sender, session, robust, using, **kwargs):
            seen.append((sender, session, robust, using))

        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            send_on_commit(sig, "x", session, session="payload", robust="also", using="default")
            send_robust_on_commit(sig, "y", session, session=1, robust=2, using=3)
            assert seen == []
            session.commit()
        assert seen == [("x", "payload", "also", "default"), ("y", 1, 2, 3)]


class TestCapture:
    def test_capture_without_execute(self, maker):
        seen = []
        with maker() as session:
            session.add(Item(name="a"))
            session.flush()
            with capture_on_commit_callbacks(session) as callbacks:
                on_commit(lambda: seen.append(1), session=session)
            session.commit()
            assert seen == []
            assert len(callbacks) == 1
            callbacks[0]()
        assert seen == [1]

    def test_capture_execute_runs_nested_registrations(self, maker):
        seen = []

        def first():
            seen.append(1)
            on_commit(lambda: seen.append(2))

        with capture_on_commit_callbacks(execute=True) as callbacks:
            on_commit(first)
            assert seen == []
        assert seen == [1, 2]
        assert len(callbacks) == 2

    def test_capture_execute_robust_logs_as_django(self, caplog):
        """captureOnCommitCallbacks(execute=True)'s line: on_commit(), no "during transaction"."""
        seen = []

        def boom():
            raise ValueError("boom")

        caplog.set_level(logging.ERROR, logger="tocsin")
        with capture_on_commit_callbacks(execute=True):
            on_commit(boom, robust=True)
            on_commit(lambda: seen.append(1))
        assert seen == [1]
        [record] = caplog.records
        assert record.getMessage() == (
            "Error calling TestCapture.test_capture_execute_robust_logs_as_django.<locals>.boom in "
            "on_commit() (boom)."
        )

    def test_transactional_test_pattern(self, engine):
        """A test wrapped in a rolled-back connection transaction still sees its callbacks."""
        Base.metadata.create_all(engine)
        try:
            seen = []
            with engine.connect() as conn:
                outer = conn.begin()
                session = Session(bind=conn, join_transaction_mode="create_savepoint")
                with capture_on_commit_callbacks(session, execute=True) as callbacks:
                    item = Item(name="a")
                    session.add(item)
                    session.flush()
                    send_on_commit(tocsin.Signal(), Item, instance=item)
                    on_commit(lambda: seen.append(item.name), session=session)
                    session.commit()
                    assert seen == []
                assert seen == ["a"]
                assert len(callbacks) == 2
                session.close()
                outer.rollback()
            with Session(engine) as s:
                assert s.scalars(select(Item)).all() == []
        finally:
            Base.metadata.drop_all(engine)

    def test_capture_for_another_session_does_not_capture(self, maker):
        seen = []
        with maker() as session, maker() as other:
            session.add(Item(name="a"))
            session.flush()
            with capture_on_commit_callbacks(other) as callbacks:
                on_commit(lambda: seen.append(1), session=session)
            session.commit()
        assert callbacks == []
        assert seen == [1]


class TestDocs:
    def test_docs_example_runs(self):
        """The runnable example of docs/sqlalchemy.md runs as written."""
        doc = (Path(__file__).parent.parent / "docs" / "sqlalchemy.md").read_text()
        section = doc.split("### A runnable example", 1)[1]
        code = section.split("```python\n", 1)[1].split("```", 1)[0]
        module = types.ModuleType("tocsin_docs_example")  # SQLAlchemy resolves annotations there
        sys.modules[module.__name__] = module
        try:
            exec(compile(code, "docs/sqlalchemy.md", "exec"), module.__dict__)
        finally:
            del sys.modules[module.__name__]


class TestAgainstTheDatabase:
    """Random savepoint trees: a callback runs iff the row written with it is committed."""

    @example(program=[(True, ["add", (False, ["add"])]), "add"], commit=True)
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(program=BLOCKS, commit=st.booleans())
    def test_callbacks_follow_the_rows(self, maker, program, commit):
        ran = []
        keys = iter(range(1000))
        with maker() as session:
            session.begin()

            def run(block):
                for item in block:
                    if item == "add":
                        key = next(keys)
                        session.add(Item(id=key, name=f"n{key}"))
                        session.flush()
                        on_commit(functools.partial(ran.append, key), session=session)
                    else:
                        release, inner = item
                        savepoint = session.begin_nested()
                        run(inner)
                        savepoint.commit() if release else savepoint.rollback()

            run(program)
            if commit:
                session.commit()
            else:
                session.rollback()
            assert not session.in_transaction()
        with maker() as s:
            committed = sorted(s.scalars(select(Item.id)))
            s.execute(delete(Item))
            s.commit()
        assert ran == committed
