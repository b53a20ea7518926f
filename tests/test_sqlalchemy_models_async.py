"""Model signals through AsyncSession on aiosqlite (memory, file) and psycopg."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from tocsin.sqlalchemy import _models as _sqlalchemy_models
from tocsin.sqlalchemy import install, post_delete, post_save, pre_delete, pre_save

if TYPE_CHECKING:
    from collections.abc import Iterator


class Base(DeclarativeBase):
    pass


class Parent(Base):
    __tablename__ = "ma_parent"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    children: Mapped[list[Child]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class Child(Base):
    __tablename__ = "ma_child"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("ma_parent.id"))


class Audit(Base):
    __tablename__ = "ma_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(String(100))


@pytest.fixture(autouse=True)
def _uninstall_makers() -> Iterator[None]:
    """Undo install(maker) after each test.

    An install on a (async_)sessionmaker also sends pre_init/post_init for
    every mapped class, process-wide (construction knows no Session), so it
    would leak into every later test.
    """
    saved = list(_sqlalchemy_models._everywhere)
    yield
    _sqlalchemy_models._everywhere[:] = saved


class TestAsyncSession:
    def test_signals_and_receiver_writes_commit_together(self, run_async_db):
        """Installed on an async_sessionmaker; a post_save receiver writes through the Session."""
        seen: list[tuple[str | None, Any, Any]] = []

        def record(signal, sender, instance, **kwargs):
            seen.append((signal.name, sender, kwargs.get("created", kwargs.get("origin"))))

        def audit(sender, instance, created, **kwargs):
            Session.object_session(instance).add(Audit(what=f"{sender.__name__} {instance.name} {created}"))

        async def body(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            maker = async_sessionmaker(engine, expire_on_commit=False)
            install(maker)
            async with maker() as s:
                parent = Parent(name="p", children=[Child()])
                s.add(parent)
                await s.commit()
                await s.delete(parent)
                await s.commit()
                assert await s.scalar(select(func.count()).select_from(Parent)) == 0
                assert (await s.scalars(select(Audit.what))).all() == ["Parent p True"]
            async with AsyncSession(engine) as plain:  # not from the maker: no signals
                plain.add(Parent(name="q"))
                await plain.commit()

        for sig in (pre_save, post_save, pre_delete, post_delete):
            sig.connect(record)
        post_save.connect(audit, sender=Parent)
        try:
            run_async_db(body)
        finally:
            for sig in (pre_save, post_save, pre_delete, post_delete):
                sig.disconnect(record)
            post_save.disconnect(audit, sender=Parent)
        names = [(name, sender.__name__) for name, sender, _ in seen]
        assert names == [
            ("pre_save", "Parent"),
            ("pre_save", "Child"),
            ("post_save", "Parent"),
            ("post_save", "Child"),
            ("pre_save", "Audit"),
            ("post_save", "Audit"),
            ("pre_delete", "Child"),
            ("pre_delete", "Parent"),
            ("post_delete", "Child"),
            ("post_delete", "Parent"),
        ]


class TestAsyncReceivers:
    """Async receivers of model signals, sent from inside an AsyncSession flush."""

    def test_async_pre_save_edit_persists_and_post_save_runs(self, run_async_db):
        seen: list[tuple[str, str, Any]] = []

        async def shout(sender, instance, **kwargs):
            await asyncio.sleep(0)  # really awaited, in the event loop
            instance.name = instance.name.upper()
            seen.append(("pre_save", instance.name, kwargs["update_fields"]))

        async def saved(sender, instance, created, **kwargs):
            await asyncio.sleep(0)
            seen.append(("post_save", instance.name, created))

        def sync_saved(sender, instance, created, **kwargs):
            seen.append(("sync post_save", instance.name, created))

        async def body(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            maker = async_sessionmaker(engine, expire_on_commit=False)
            install(maker)
            async with maker() as s:
                parent = Parent(name="p")
                s.add(parent)
                await s.commit()
                parent.name = "q"
                await s.commit()
            async with AsyncSession(engine) as s:
                assert (await s.scalars(select(Parent.name))).all() == ["Q"]

        pre_save.connect(shout, sender=Parent)
        post_save.connect(saved, sender=Parent)
        post_save.connect(sync_saved, sender=Parent)
        try:
            run_async_db(body)
        finally:
            pre_save.disconnect(shout, sender=Parent)
            post_save.disconnect(saved, sender=Parent)
            post_save.disconnect(sync_saved, sender=Parent)
        assert seen == [
            ("pre_save", "P", None),
            ("sync post_save", "P", True),  # sync receivers first, as in send()
            ("post_save", "P", True),
            ("pre_save", "Q", frozenset({"name"})),
            ("sync post_save", "Q", False),
            ("post_save", "Q", False),
        ]

    @pytest.mark.parametrize("signal", [pre_save, post_save], ids=["pre_save", "post_save"])
    def test_async_receiver_error_propagates_and_rolls_back(self, run_async_db, signal):
        class Refused(Exception):
            pass

        async def refuse(sender, instance, **kwargs):
            await asyncio.sleep(0)
            raise Refused(instance.name)

        async def body(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            maker = async_sessionmaker(engine)
            install(maker)
            async with maker() as s:
                s.add(Audit(what="kept"))
                await s.commit()
                s.add(Parent(name="p"))
                s.add(Audit(what="lost"))
                with pytest.raises(Refused) as info:
                    await s.commit()
                assert str(info.value) == "p"
                await s.rollback()
                assert await s.scalar(select(func.count()).select_from(Parent)) == 0
                assert (await s.scalars(select(Audit.what))).all() == ["kept"]

        signal.connect(refuse, sender=Parent)
        try:
            run_async_db(body)
        finally:
            signal.disconnect(refuse, sender=Parent)

    def test_sync_send_in_the_loop_still_refuses_async_receivers(self):
        async def noop(sender, **kwargs):
            pass

        async def main() -> None:
            with pytest.raises(RuntimeError, match="asend"):
                pre_save.send(Parent, instance=None, raw=False, using="default", update_fields=None)

        pre_save.connect(noop, sender=Parent)
        try:
            asyncio.run(main())
        finally:
            pre_save.disconnect(noop, sender=Parent)
