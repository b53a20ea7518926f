"""Model signals on real SQLite (memory, file) and PostgreSQL, sync Sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Column, ForeignKey, String, Table, delete, func, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from tocsin.sqlalchemy import (
    class_prepared,
    install,
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
    raw_loading,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Engine

    import tocsin


class Base(DeclarativeBase):
    pass


install(Base, delete_statements=True)

article_tag = Table(
    "m_article_tag",
    Base.metadata,
    Column("article_id", ForeignKey("m_article.id"), primary_key=True),
    Column("tag_id", ForeignKey("m_tag.id"), primary_key=True),
)


class Author(Base):
    __tablename__ = "m_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "m_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    author_id: Mapped[int] = mapped_column(ForeignKey("m_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


class Article(Base):
    __tablename__ = "m_article"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    tags: Mapped[list[Tag]] = relationship(secondary=article_tag, back_populates="articles")


class Tag(Base):
    __tablename__ = "m_tag"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    articles: Mapped[list[Article]] = relationship(secondary=article_tag, back_populates="tags")


class Log(Base):
    __tablename__ = "m_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(100), index=True)  # an index: a SELECT order unlike the pk's


SAVE_DELETE = (pre_save, post_save, pre_delete, post_delete, m2m_changed)


class Recorder:
    """Records (signal name, sender, kwargs) for every send of the given signals."""

    def __init__(self, signals: tuple[tocsin.Signal, ...] = SAVE_DELETE) -> None:
        self.calls: list[tuple[str | None, Any, dict[str, Any]]] = []
        self.signals = signals
        for sig in signals:
            sig.connect(self, weak=False)

    def __call__(self, signal: tocsin.Signal, sender: Any, **kwargs: Any) -> None:
        self.calls.append((signal.name, sender, kwargs))

    def names(self) -> list[tuple[str | None, str]]:
        return [
            (name, getattr(sender, "__name__", getattr(sender, "name", sender)))
            for name, sender, _ in self.calls
        ]

    def close(self) -> None:
        for sig in self.signals:
            sig.disconnect(self)


@pytest.fixture(name="maker")
def _maker(engine: Engine) -> Iterator[sessionmaker[Session]]:
    Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    Base.metadata.drop_all(engine)


@pytest.fixture(name="rec")
def _rec() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def count(maker: sessionmaker[Session], model: type[Base]) -> int:
    with maker() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


class TestSave:
    def test_new_object(self, maker, rec):
        """pre_save then post_save(created=True), update_fields None, using 'default'."""
        with maker() as s:
            author = Author(name="a")
            s.add(author)
            s.commit()
        assert rec.calls == [
            (
                "pre_save",
                Author,
                {"instance": author, "raw": False, "using": "default", "update_fields": None},
            ),
            (
                "post_save",
                Author,
                {
                    "instance": author,
                    "created": True,
                    "update_fields": None,
                    "raw": False,
                    "using": "default",
                },
            ),
        ]

    def test_existing_object_sends_the_changed_columns(self, maker, rec):
        with maker() as s:
            book = Book(title="t", author=Author(name="a"))
            s.add(book)
            s.commit()
            rec.calls.clear()
            book.title = "u"
            book.author = Author(name="b")
            s.commit()
        saves = [(n, sender, kw.get("update_fields"), kw.get("created")) for n, sender, kw in rec.calls]
        assert saves == [
            ("pre_save", Author, None, None),
            ("pre_save", Book, frozenset({"title", "author_id"}), None),
            ("post_save", Author, None, True),
            ("post_save", Book, frozenset({"title", "author_id"}), False),
        ]

    def test_unchanged_or_collection_only_changes_send_nothing(self, maker, rec):
        with maker() as s:
            author = Author(name="a")
            s.add(author)
            s.commit()
            rec.calls.clear()
            author.name = "a"  # loaded and equal: no UPDATE
            s.commit()
            article, tag = Article(title="x"), Tag(name="t")
            s.add_all([article, tag])
            s.commit()
            rec.calls.clear()
            article.tags.append(tag)  # collection only: no UPDATE of m_article
            s.commit()
        assert [(name, kw["action"]) for name, _, kw in rec.calls] == [
            ("m2m_changed", "pre_add"),
            ("m2m_changed", "post_add"),
        ]

    def test_pre_save_edit_is_persisted_and_post_save_rows_commit_together(self, maker):
        def upper(sender, instance, **kwargs):
            instance.name = instance.name.upper()

        def log(sender, instance, created, **kwargs):
            Session.object_session(instance).add(Log(message=f"{instance.name} {created}"))

        pre_save.connect(upper, sender=Author)
        post_save.connect(log, sender=Author)
        try:
            with maker() as s:
                s.add(Author(name="ann"))
                s.commit()
        finally:
            pre_save.disconnect(upper, sender=Author)
            post_save.disconnect(log, sender=Author)
        with maker() as s:
            assert s.scalars(select(Author.name)).all() == ["ANN"]
            assert s.scalars(select(Log.message)).all() == ["ANN True"]

    @pytest.mark.parametrize("signal", [pre_save, post_save])
    def test_receiver_error_rolls_everything_back(self, maker, signal):
        class Boom(Exception):
            pass

        def fail(sender, **kwargs):
            raise Boom

        with maker() as s:
            s.add(Log(message="earlier, same transaction"))
            s.flush()
            signal.connect(fail, sender=Author)
            try:
                s.add(Author(name="a"))
                with pytest.raises(Boom):
                    s.commit()
                s.rollback()
            finally:
                signal.disconnect(fail, sender=Author)
        assert count(maker, Author) == 0
        assert count(maker, Log) == 0

    def test_raw_loading(self, maker, rec):
        with raw_loading(), maker() as s:
            s.add(Author(id=7, name="fixture"))
            s.commit()
        assert [(n, kw["raw"]) for n, _, kw in rec.calls] == [("pre_save", True), ("post_save", True)]

    def test_bulk_statements_send_no_save_signals(self, maker, rec):
        with maker() as s:
            s.execute(insert(Author), [{"name": "a"}, {"name": "b"}])
            s.execute(update(Author).where(Author.name == "a").values(name="c"))
            s.commit()
        assert rec.calls == []
        assert count(maker, Author) == 2


class TestDelete:
    def test_cascade_children_first_with_origin(self, maker, rec):
        with maker() as s:
            author = Author(name="a", books=[Book(title="1"), Book(title="2")])
            s.add(author)
            s.commit()
            b1, b2 = author.books
            rec.calls.clear()
            s.delete(author)
            s.commit()
        assert [(n, sender, kw["instance"], kw["origin"]) for n, sender, kw in rec.calls] == [
            ("pre_delete", Book, b1, author),
            ("pre_delete", Book, b2, author),
            ("pre_delete", Author, author, author),
            ("post_delete", Book, b2, author),  # reversed, as Django's Collector does
            ("post_delete", Book, b1, author),
            ("post_delete", Author, author, author),
        ]
        assert count(maker, Book) == 0

    def test_each_models_objects_by_primary_key(self, maker, rec):
        """Django's Collector sorts each model's instances by pk (pre_delete), then reverses them."""
        with maker() as s:
            books = [Book(id=3, title="3"), Book(id=1, title="1"), Book(id=2, title="2")]
            author = Author(name="a", books=books)
            s.add(author)
            s.commit()
            assert [b.id for b in author.books] == [3, 1, 2]  # the cascade walks this order
            rec.calls.clear()
            s.delete(author)
            s.commit()
        assert [(n, sender.__name__, kw["instance"].id) for n, sender, kw in rec.calls] == [
            ("pre_delete", "Book", 1),
            ("pre_delete", "Book", 2),
            ("pre_delete", "Book", 3),
            ("pre_delete", "Author", author.id),
            ("post_delete", "Book", 3),
            ("post_delete", "Book", 2),
            ("post_delete", "Book", 1),
            ("post_delete", "Author", author.id),
        ]

    def test_orphan_is_deleted_with_signals(self, maker, rec):
        with maker() as s:
            author = Author(name="a", books=[Book(title="1"), Book(title="2")])
            s.add(author)
            s.commit()
            b1 = author.books[0]
            rec.calls.clear()
            author.books.remove(b1)
            s.commit()
        assert [(n, kw["instance"], kw["origin"]) for n, _, kw in rec.calls] == [
            ("pre_delete", b1, author),
            ("post_delete", b1, author),
        ]
        assert count(maker, Book) == 1

    def test_pre_delete_error_keeps_the_row(self, maker):
        def refuse(sender, **kwargs):
            raise PermissionError

        with maker() as s:
            s.add(Author(name="a"))
            s.commit()
        pre_delete.connect(refuse, sender=Author)
        try:
            with maker() as s:
                s.delete(s.scalars(select(Author)).one())
                with pytest.raises(PermissionError):
                    s.commit()
        finally:
            pre_delete.disconnect(refuse, sender=Author)
        assert count(maker, Author) == 1

    def test_delete_statement_sends_per_row_when_installed_so(self, maker, rec):
        with maker() as s:
            s.add_all([Log(message="a"), Log(message="b"), Log(message="keep")])
            s.commit()
            rec.calls.clear()
            stmt = delete(Log).where(Log.message != "keep")
            s.execute(stmt)
            s.commit()
        assert [(n, kw["instance"].message, kw["origin"] is stmt) for n, _, kw in rec.calls] == [
            ("pre_delete", "a", True),
            ("pre_delete", "b", True),
            ("post_delete", "b", True),  # reversed, as Django's Collector does
            ("post_delete", "a", True),
        ]
        assert count(maker, Log) == 1

    def test_delete_statement_order_is_djangos_whatever_the_select_returns(self, maker, rec):
        """pre_delete by ascending primary key, post_delete descending, as QuerySet.delete().

        The rows are laid out so that a SELECT without ORDER BY returns them
        out of key order: SQLite reads them through the index on message
        (3, 1, 2), PostgreSQL in heap order, where the UPDATE moved row 1
        last (2, 3, 1).
        """
        with maker() as s:
            s.add_all([Log(id=1, message="b"), Log(id=2, message="c"), Log(id=3, message="a")])
            s.commit()
            s.execute(update(Log).where(Log.id == 1).values(message="b2"))
            s.commit()
            s.expunge_all()
            rec.calls.clear()
            s.execute(delete(Log).where(Log.message.in_(["a", "b2", "c"])))
            s.commit()
        assert [(n, kw["instance"].id) for n, _, kw in rec.calls] == [
            ("pre_delete", 1),
            ("pre_delete", 2),
            ("pre_delete", 3),
            ("post_delete", 3),
            ("post_delete", 2),
            ("post_delete", 1),
        ]
        assert count(maker, Log) == 0


@pytest.fixture(name="m2m")
def _m2m() -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def record(sender, signal, **kwargs):
        calls.append({"sender": sender, **kwargs})

    m2m_changed.connect(record, sender=article_tag)
    yield calls
    m2m_changed.disconnect(record, sender=article_tag)


class TestManyToMany:
    def saved(self, s: Session) -> tuple[Article, Tag, Tag]:
        article, t1, t2 = Article(title="a"), Tag(name="t1"), Tag(name="t2")
        s.add_all([article, t1, t2])
        s.commit()
        return article, t1, t2

    def test_add_forward(self, maker, m2m):
        with maker() as s:
            article, t1, t2 = self.saved(s)
            article.tags.extend([t1, t2])
            s.commit()
        base = {
            "sender": article_tag,
            "instance": article,
            "reverse": False,
            "model": Tag,
            "using": "default",
        }
        assert m2m == [
            {**base, "action": "pre_add", "pk_set": {t1.id, t2.id}},
            {**base, "action": "post_add", "pk_set": {t1.id, t2.id}},
        ]
        with maker() as s:
            assert len(s.get(Article, article.id).tags) == 2

    def test_add_reverse(self, maker, m2m):
        with maker() as s:
            article, t1, _ = self.saved(s)
            t1.articles.append(article)
            s.commit()
        assert [(c["action"], c["instance"], c["reverse"], c["model"], c["pk_set"]) for c in m2m] == [
            ("pre_add", t1, True, Article, {article.id}),
            ("post_add", t1, True, Article, {article.id}),
        ]

    def test_remove_then_clear(self, maker, m2m):
        with maker() as s:
            article, t1, t2 = self.saved(s)
            article.tags.extend([t1, t2])
            s.commit()
            m2m.clear()
            article.tags.remove(t1)
            s.commit()
            t2.articles.clear()
            s.commit()
        assert [(c["action"], c["instance"], c["reverse"], c["pk_set"]) for c in m2m] == [
            ("pre_remove", article, False, {t1.id}),
            ("post_remove", article, False, {t1.id}),
            ("pre_clear", t2, True, None),
            ("post_clear", t2, True, None),
        ]

    def test_unsaved_target_is_refused(self, maker, m2m):
        with maker() as s:
            article, _, _ = self.saved(s)
            article.tags.append(Tag(name="new"))
            with pytest.raises(ValueError, match=r"^Cannot send m2m_changed for Article\.tags: the value "):
                s.commit()

    def test_receiver_may_query(self, maker):
        seen = []

        def count_rows(sender, instance, action, **kwargs):
            seen.append((action, len(Session.object_session(instance).execute(select(article_tag)).all())))

        m2m_changed.connect(count_rows, sender=article_tag)
        try:
            with maker() as s:
                article, t1, _ = self.saved(s)
                article.tags.append(t1)
                s.commit()
        finally:
            m2m_changed.disconnect(count_rows, sender=article_tag)
        assert seen == [("pre_add", 0), ("post_add", 1)]


class TestInitAndLazySenders:
    def test_init_and_load(self, maker):
        rec = Recorder((pre_init, post_init))
        try:
            author = Author(name="a")
            with maker() as s:
                s.add(author)
                s.commit()
            with maker() as s:
                loaded = s.get(Author, author.id)
        finally:
            rec.close()
        assert rec.calls == [
            ("pre_init", Author, {"args": (), "kwargs": {"name": "a"}}),
            ("post_init", Author, {"instance": author}),
            ("pre_init", Author, {"args": (author.id, "a"), "kwargs": {}}),
            ("post_init", Author, {"instance": loaded}),
        ]

    def test_class_prepared_and_lazy_string_sender(self):
        prepared, saved = [], []

        def on_prepared(sender, **kwargs):
            prepared.append(sender)

        def on_save(sender, instance, **kwargs):
            saved.append(instance)

        class_prepared.connect(on_prepared)
        post_init.connect(on_save, sender="Late")
        try:

            class Late(Base):
                __tablename__ = "m_late"
                id: Mapped[int] = mapped_column(primary_key=True)

            Late(id=1)
        finally:
            class_prepared.disconnect(on_prepared)
            post_init.disconnect(on_save, sender="Late")
        assert prepared == [Late]
        assert len(saved) == 1


class TestMore:
    def test_on_error_with_a_lazy_string_sender(self):
        """on_error= is kept while the sender class is pending, and used once it is mapped."""
        failures = []

        def on_init(sender, **kwargs):
            raise LookupError(sender.__name__)

        def on_error(exc, context):
            failures.append((str(exc), context.sender, context.method))

        post_init.connect(on_init, sender="LateFailing", on_error=on_error)
        try:

            class LateFailing(Base):
                __tablename__ = "m_late_failing"
                id: Mapped[int] = mapped_column(primary_key=True)

            with pytest.raises(LookupError, match="LateFailing"):
                LateFailing(id=1)
        finally:
            post_init.disconnect(on_init, sender="LateFailing")
        assert failures == [("LateFailing", LateFailing, "send")]

    def test_string_sender_of_a_mapped_class(self):
        def receiver(sender, **kwargs):
            pass

        spec = f"{Author.__module__}:Author"
        pre_save.connect(receiver, sender=spec)
        assert pre_save.receivers_for(Author) == [receiver]
        assert pre_save.disconnect(receiver, sender=spec)
        assert pre_save.receivers_for(Author) == []

    def test_pending_string_sender_can_be_disconnected(self):
        def receiver(sender, **kwargs):
            pass

        pre_save.connect(receiver, sender="NeverMapped")
        assert pre_save.disconnect(receiver, sender="NeverMapped")
        assert not pre_save.disconnect(receiver, sender="NeverMapped")

    def test_pending_string_sender_leaves_other_connections(self):
        """Connecting for a class not mapped yet touches none of the receiver's connections."""

        def receiver(sender, **kwargs):
            pass

        pre_save.connect(receiver)
        pre_save.connect(receiver, sender=Author)
        try:
            pre_save.connect(receiver, sender="NotMappedYet")
            assert [c.sender for c in pre_save.connections() if c.receiver is receiver] == [None, Author]
            assert pre_save.receivers_for(Book) == [receiver]
        finally:
            pre_save.disconnect(receiver)
            pre_save.disconnect(receiver, sender=Author)
            pre_save.disconnect(receiver, sender="NotMappedYet")

    def test_pending_string_sender_is_validated(self):
        """A pending connection is checked at once, as connect() checks, and nothing is kept."""

        def no_kwargs(sender):
            pass

        def receiver(sender, **kwargs):
            pass

        with pytest.raises(ValueError, match="must accept keyword arguments"):
            pre_save.connect(no_kwargs, sender="NotMappedYet")
        with pytest.raises(TypeError, match="via= must be a delivery policy"):
            pre_save.connect(receiver, sender="NotMappedYet", via="later")
        with pytest.raises(TypeError, match="priority must be an int"):
            pre_save.connect(receiver, sender="NotMappedYet", priority="high")
        with pytest.raises(TypeError, match="unhashable"):
            pre_save.connect(receiver, sender="NotMappedYet", dispatch_uid=["uid"])
        with pytest.raises(TypeError, match="on_error= must be a callable"):
            pre_save.connect(receiver, sender="NotMappedYet", on_error="log")
        assert not pre_save.disconnect(receiver, sender="NotMappedYet")
        assert not pre_save.disconnect(no_kwargs, sender="NotMappedYet")

    def test_unsaved_instance_is_refused(self, maker, m2m):
        with maker() as s:
            tag = Tag(name="t")
            s.add(tag)
            s.commit()
            s.add(Article(title="new", tags=[tag]))
            with pytest.raises(ValueError, match=r"the instance <.*Article.*> has no primary key yet"):
                s.commit()

    def test_objects_added_by_pre_save_are_signalled_and_saved(self, maker, rec):
        def add_log(sender, instance, **kwargs):
            Session.object_session(instance).add(Log(message=instance.name))

        pre_save.connect(add_log, sender=Author)
        try:
            with maker() as s:
                s.add(Author(name="a"))
                s.commit()
        finally:
            pre_save.disconnect(add_log, sender=Author)
        assert rec.names() == [
            ("pre_save", "Author"),
            ("pre_save", "Log"),
            ("post_save", "Author"),
            ("post_save", "Log"),
        ]
        assert count(maker, Log) == 1

    def test_expired_attribute_assigned_the_same_value_is_an_update(self, engine, rec):
        Base.metadata.create_all(engine)
        try:
            with Session(engine) as s:  # expire_on_commit=True
                author = Author(name="a")
                s.add(author)
                s.commit()
                rec.calls.clear()
                author.name = "a"
                s.commit()
        finally:
            Base.metadata.drop_all(engine)
        assert [(n, kw["update_fields"]) for n, _, kw in rec.calls] == [
            ("pre_save", frozenset({"name"})),
            ("post_save", frozenset({"name"})),
        ]

    def test_receiver_error_inside_a_savepoint(self, maker, rec):
        def refuse(sender, **kwargs):
            raise PermissionError

        pre_save.connect(refuse, sender=Author)
        try:
            with maker() as s, s.begin():
                s.add(Log(message="outer"))
                savepoint = s.begin_nested()
                s.add(Author(name="refused"))
                with pytest.raises(PermissionError):
                    s.flush()
                savepoint.rollback()
        finally:
            pre_save.disconnect(refuse, sender=Author)
        assert count(maker, Log) == 1
        assert count(maker, Author) == 0
        assert rec.names() == [("pre_save", "Log"), ("post_save", "Log"), ("pre_save", "Author")]

    def test_using_may_be_computed(self, engine):
        class Other(DeclarativeBase):
            pass

        class Thing(Other):
            __tablename__ = "m_thing"
            id: Mapped[int] = mapped_column(primary_key=True)

        install(Other, using=lambda session: session.get_bind().dialect.name)
        seen = []

        def record(sender, using, **kwargs):
            seen.append(using)

        Other.metadata.create_all(engine)
        post_save.connect(record, sender=Thing)
        try:
            with Session(engine) as s:
                s.add(Thing())
                s.commit()
        finally:
            post_save.disconnect(record, sender=Thing)
            Other.metadata.drop_all(engine)
        assert seen == [engine.dialect.name]

    def test_uninstalled_classes_send_nothing(self, engine, rec):
        class Plain(DeclarativeBase):
            pass

        class Row(Plain):
            __tablename__ = "m_row"
            id: Mapped[int] = mapped_column(primary_key=True)

        Plain.metadata.create_all(engine)
        try:
            with Session(engine) as s:
                s.add(Row())
                s.commit()
                s.execute(delete(Row))
                s.commit()
        finally:
            Plain.metadata.drop_all(engine)
        assert rec.calls == []

    def test_install_refuses_other_objects(self):
        with pytest.raises(TypeError, match=r"^install\(\) takes a declarative base class, a registry, "):
            install(object())


class TestInheritance:
    def test_sender_is_the_instances_class(self, engine, rec):
        """Joined and single-table subclasses: one signal each, from the subclass."""

        class Zoo(DeclarativeBase):
            pass

        class Animal(Zoo):
            __tablename__ = "m_animal"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(20))
            kind: Mapped[str] = mapped_column(String(20))
            __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}

        class Dog(Animal):
            __tablename__ = "m_dog"
            id: Mapped[int] = mapped_column(ForeignKey("m_animal.id"), primary_key=True)
            bark: Mapped[str] = mapped_column(String(20), default="woof")
            __mapper_args__ = {"polymorphic_identity": "dog"}

        class Cat(Animal):
            __mapper_args__ = {"polymorphic_identity": "cat"}

        install(Zoo)
        Zoo.metadata.create_all(engine)
        init = Recorder((post_init,))
        try:
            with Session(engine) as s:
                dog, cat = Dog(name="rex"), Cat(name="tom")
                s.add_all([dog, cat])
                s.commit()
                dog.bark, dog.name = "grr", "Rex"
                s.commit()
                s.delete(dog)
                s.commit()
        finally:
            init.close()
            Zoo.metadata.drop_all(engine)
        assert init.names() == [("post_init", "Dog"), ("post_init", "Cat")]
        assert [(n, sender, kw.get("update_fields")) for n, sender, kw in rec.calls] == [
            ("pre_save", Dog, None),
            ("pre_save", Cat, None),
            ("post_save", Dog, None),
            ("post_save", Cat, None),
            ("pre_save", Dog, frozenset({"bark", "name"})),
            ("post_save", Dog, frozenset({"bark", "name"})),
            ("pre_delete", Dog, None),
            ("post_delete", Dog, None),
        ]


class TestNothingListening:
    """With no receiver the integration skips its work; that must not lose a send."""

    def test_receivers_connected_later_hear_later_flushes(self, maker):
        seen: list[tuple[str | None, Any, Any]] = []

        def record(signal, sender, instance, **kwargs):
            seen.append((signal.name, instance.name, kwargs.get("update_fields")))

        with maker() as s:
            author = Author(name="a")
            s.add(author)
            s.commit()  # nothing listening
            pre_save.connect(record, sender=Author)
            post_save.connect(record, sender=Author)
            try:
                author.name = "b"
                s.add(Author(name="c"))
                s.commit()
            finally:
                pre_save.disconnect(record, sender=Author)
                post_save.disconnect(record, sender=Author)
            author.name = "d"
            s.commit()  # nothing listening again
        assert seen == [
            ("pre_save", "c", None),
            ("pre_save", "b", frozenset({"name"})),
            ("post_save", "c", None),
            ("post_save", "b", frozenset({"name"})),
        ]

    def test_a_receiver_connected_by_a_pre_save_receiver_hears_the_same_flush(self, maker):
        saved: list[str] = []

        def on_post_save(sender, instance, **kwargs):
            saved.append(instance.name)

        def on_pre_save(sender, instance, **kwargs):
            post_save.connect(on_post_save, sender=Author)

        pre_save.connect(on_pre_save, sender=Author)
        try:
            with maker() as s:
                s.add(Author(name="a"))
                s.commit()
        finally:
            pre_save.disconnect(on_pre_save, sender=Author)
            post_save.disconnect(on_post_save, sender=Author)
        assert saved == ["a"]

    def test_capture_sees_every_send_without_any_receiver(self, maker):
        from tocsin.testing import capture

        with capture(pre_init, post_init, *SAVE_DELETE) as sent, maker() as s:
            author = Author(name="a")
            article, tag = Article(title="t"), Tag(name="x")
            s.add_all([author, article, tag])
            s.commit()
            article.tags.append(tag)
            author.name = "b"
            s.commit()
            s.delete(author)
            s.commit()
        names = [(c.signal.name, getattr(c.sender, "__name__", None) or c.sender.name) for c in sent]
        assert names == [
            ("pre_init", "Author"),
            ("post_init", "Author"),
            ("pre_init", "Article"),
            ("post_init", "Article"),
            ("pre_init", "Tag"),
            ("post_init", "Tag"),
            ("pre_save", "Author"),
            ("pre_save", "Article"),
            ("pre_save", "Tag"),
            ("post_save", "Author"),
            ("post_save", "Article"),
            ("post_save", "Tag"),
            ("pre_save", "Author"),
            ("m2m_changed", "m_article_tag"),
            ("post_save", "Author"),
            ("m2m_changed", "m_article_tag"),
            ("pre_delete", "Author"),
            ("post_delete", "Author"),
        ]


def test_model_signals_work_without_greenlet():
    """greenlet is optional (SQLAlchemy's asyncio extra): sync Sessions and on_commit must not need it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        sys.modules["greenlet"] = None  # as if it were not installed
        from sqlalchemy import create_engine
        from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
        import tocsin.sqlalchemy as ts

        class Base(DeclarativeBase):
            pass

        class Row(Base):
            __tablename__ = "row"
            id: Mapped[int] = mapped_column(primary_key=True)

        ts.install(Base)
        seen = []
        ts.post_save.connect(lambda sender, instance, **kw: seen.append(instance.id), sender=Row, weak=False)
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        with Session(engine) as s:
            s.add(Row())
            s.commit()
        assert seen == [1], seen

        # on_commit and via=on_commit too (they ask whether they run in a greenlet)
        ran = []
        ts.post_save.connect(
            lambda sender, instance, **kw: ran.append(("deferred", instance.id)),
            sender=Row, weak=False, via=ts.on_commit,
        )
        from tocsin import Signal
        shipped = Signal()
        shipped.connect(lambda sender, **kw: ran.append("shipped"), weak=False)
        with Session(engine) as s:
            with s.begin():
                s.add(Row())
                ts.on_commit(lambda: ran.append("callback"), session=s)
                ts.send_on_commit(shipped, Row, s)
        assert sorted(map(str, ran)) == sorted(map(str, [("deferred", 2), "callback", "shipped"])), ran
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert (proc.returncode, proc.stderr) == (0, "")
