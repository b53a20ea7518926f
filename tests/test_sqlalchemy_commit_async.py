"""on_commit under AsyncSession: aiosqlite (memory, file) and psycopg async."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import tocsin
from tocsin.sqlalchemy import on_commit, send_on_commit


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "commit_note"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


async def setup(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    # As SQLAlchemy advises for asyncio: callbacks read attributes after the
    # commit, and reloading an expired one would need IO outside a greenlet.
    return async_sessionmaker(engine, expire_on_commit=False)


async def texts(maker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with maker() as s:
        return sorted((await s.scalars(select(Note.text))).all())


class TestAsyncSession:
    def test_async_callback_awaited_after_commit(self, run_async_db):
        seen = []

        async def body(engine):
            maker = await setup(engine)

            async def later():
                await asyncio.sleep(0)
                seen.append(await texts(maker))  # a new AsyncSession, after the commit

            async with maker() as session:
                async with session.begin():
                    session.add(Note(text="a"))
                    on_commit(later, session=session)
                    await session.flush()
                    assert seen == []
                assert seen == [["a"]]  # awaited before the commit returned

        run_async_db(body)
        assert seen == [["a"]]

    def test_sync_callback_and_rollback(self, run_async_db):
        seen = []

        async def body(engine):
            maker = await setup(engine)
            async with maker() as session:
                session.add(Note(text="a"))
                await session.flush()
                on_commit(lambda: seen.append("dropped"), session=session)
                await session.rollback()
                session.add(Note(text="b"))
                await session.flush()
                on_commit(lambda: seen.append("kept"), session=session)
                await session.commit()
            assert await texts(maker) == ["b"]

        run_async_db(body)
        assert seen == ["kept"]

    def test_savepoint_rollback(self, run_async_db):
        seen = []

        async def body(engine):
            maker = await setup(engine)
            async with maker() as session, session.begin():
                on_commit(lambda: seen.append("outer"), session=session)
                nested = await session.begin_nested()
                session.add(Note(text="inner"))
                on_commit(lambda: seen.append("inner"), session=session)
                await nested.rollback()
                session.add(Note(text="outer"))
            assert await texts(maker) == ["outer"]

        run_async_db(body)
        assert seen == ["outer"]

    def test_async_robust(self, run_async_db, caplog):
        seen = []

        async def body(engine):
            maker = await setup(engine)

            async def boom():
                raise ValueError("boom")

            async with maker() as session:
                session.add(Note(text="a"))
                await session.flush()
                on_commit(boom, session=session, robust=True)
                on_commit(lambda: seen.append(2), session=session)
                with caplog.at_level(logging.ERROR, logger="tocsin"):
                    await session.commit()

        run_async_db(body)
        assert seen == [2]
        [record] = caplog.records
        assert record.getMessage() == (
            "Error calling TestAsyncSession.test_async_robust.<locals>.body.<locals>.boom in "
            "on_commit() during transaction (boom)."
        )

    def test_async_error_propagates(self, run_async_db):
        async def body(engine):
            maker = await setup(engine)

            async def boom():
                raise ValueError("boom")

            async with maker() as session:
                session.add(Note(text="a"))
                await session.flush()
                on_commit(boom, session=session)
                with pytest.raises(ValueError, match=r"^boom$"):
                    await session.commit()
            assert await texts(maker) == ["a"]

        run_async_db(body)

    def test_async_receiver_via_on_commit(self, run_async_db):
        saved = tocsin.Signal()
        seen = []

        @tocsin.receiver(saved, sender=Note, via=on_commit)
        async def index(sender, instance, **kwargs):
            await asyncio.sleep(0)
            seen.append(instance.text)

        async def body(engine):
            maker = await setup(engine)
            async with maker() as session:
                note = Note(text="a")
                session.add(note)
                await session.flush()
                [(_receiver, response)] = await saved.asend(Note, instance=note)
                assert isinstance(response, tocsin.Deferred)
                assert seen == []
                await session.commit()
                assert seen == ["a"]

        run_async_db(body)

    def test_traced_async_receiver_via_on_commit(self, run_async_db):
        """Under tocsin.trace(), asend hands over in a worker thread and the run after
        the commit is reported as a deferred event of that send."""
        saved = tocsin.Signal(name="saved")

        @tocsin.receiver(saved, sender=Note, via=on_commit)
        async def index(sender, instance, **kwargs):
            await asyncio.sleep(0)
            return instance.text

        async def body(engine):
            maker = await setup(engine)
            with tocsin.trace(level=None) as t:
                async with maker() as session:
                    note = Note(text="a")
                    session.add(note)
                    await session.flush()
                    await saved.asend(Note, instance=note)
                    await session.commit()
            [send] = [s for s in t.sends if s.signal is saved]
            [run] = send.deferred
            assert run.receiver is index
            assert run.result == "a"
            assert run.error is None

        run_async_db(body)

    def test_send_on_commit_with_async_receiver(self, run_async_db):
        sig = tocsin.Signal()
        seen = []

        @sig.connect
        async def rec(sender, **kwargs):
            seen.append(("async", kwargs["n"]))

        @sig.connect
        def sync_rec(sender, **kwargs):
            seen.append(("sync", kwargs["n"]))

        async def body(engine):
            maker = await setup(engine)
            async with maker() as session:
                session.add(Note(text="a"))
                await session.flush()
                send_on_commit(sig, "x", session, n=1)
                assert seen == []
                await session.commit()

        run_async_db(body)
        assert sorted(seen) == [("async", 1), ("sync", 1)]

    def test_outside_a_transaction_async_callback_is_an_error(self, run_async_db):
        async def body(engine):
            maker = await setup(engine)

            async def later():
                pass

            async with maker() as session:
                with pytest.raises(TypeError, match="returned an awaitable"):
                    on_commit(later, session=session)

        run_async_db(body)
