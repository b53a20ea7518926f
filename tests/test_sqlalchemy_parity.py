"""Parity: tocsin's SQLAlchemy model signals against Django's own ORM.

The scenarios of Django's tests/signals run twice: on Django (configured in
process, in-memory SQLite, the models of ``tests/parity_app``) and on the
SQLAlchemy twins below through ``tocsin.sqlalchemy``, on every database of
the ``engine`` fixture. Each records its ``(signal, sender, kwargs)``
sequence, with instances as ``(class name, pk)`` and senders by name (the
m2m sender by table name), and the two must be equal.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Column, Delete, ForeignKey, String, Table, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import tocsin.sqlalchemy as ts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Engine

if importlib.util.find_spec("django") is None:
    pytest.skip("django is not installed", allow_module_level=True)


class Base(DeclarativeBase):
    pass


ts.install(Base, delete_statements=True)

article_tags = Table(
    "parity_app_article_tags",
    Base.metadata,
    Column("article_id", ForeignKey("parity_app_article.id"), primary_key=True),
    Column("tag_id", ForeignKey("parity_app_tag.id"), primary_key=True),
)


class Author(Base):
    __tablename__ = "parity_app_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author", cascade="all, delete")


class Book(Base):
    __tablename__ = "parity_app_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    author_id: Mapped[int] = mapped_column(ForeignKey("parity_app_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


class Tag(Base):
    __tablename__ = "parity_app_tag"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    articles: Mapped[list[Article]] = relationship(secondary=article_tags, back_populates="tags")


class Article(Base):
    __tablename__ = "parity_app_article"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    tags: Mapped[list[Tag]] = relationship(secondary=article_tags, back_populates="articles")


Call = tuple[str, Any, dict[str, Any]]


def _deleted_table(origin: Any) -> str | None:
    """The table of a delete statement, or of the QuerySet Django's delete() was called on."""
    if isinstance(origin, Delete):
        return str(origin.table.name)
    if type(origin).__name__ == "QuerySet":
        return str(origin.model._meta.db_table)
    return None


def norm(value: Any) -> Any:
    """Make Django's and SQLAlchemy's values comparable."""
    table = _deleted_table(value)
    if table is not None:
        return ("delete", table)
    meta = getattr(value, "_meta", None)
    if isinstance(value, type):
        return meta.db_table if meta is not None and meta.auto_created else value.__name__
    if isinstance(value, Table):
        return value.name
    if meta is not None or isinstance(value, Base):
        return (type(value).__name__, value.pk if meta is not None else value.id)
    if isinstance(value, dict):  # a copy: Django's __init__ consumes pre_init's kwargs
        return {k: norm(v) for k, v in value.items()}
    return value


class Recorder:
    """Records the sends of *signals* (name -> signal) while ``recording()``."""

    def __init__(self, signals: dict[str, Any]) -> None:
        self.signals = signals
        self.calls: list[Call] = []
        self.on = False
        for sig in signals.values():
            sig.connect(self, weak=False)

    def __call__(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        if self.on:
            name = next(n for n, s in self.signals.items() if s is signal)
            self.calls.append((name, norm(sender), {k: norm(v) for k, v in sorted(kwargs.items())}))

    def close(self) -> None:
        for sig in self.signals.values():
            sig.disconnect(self)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Call]]:
        self.calls = []
        self.on = True
        try:
            yield self.calls
        finally:
            self.on = False


SIGNALS = ("pre_save", "post_save", "pre_delete", "post_delete", "m2m_changed")


@pytest.fixture(scope="module", name="django_world")
def _django_world() -> Iterator[DjangoWorld]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["parity_app"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            USE_TZ=True,
        )
        django.setup()
    elif "parity_app" not in settings.INSTALLED_APPS:
        pytest.skip("Django was configured elsewhere in this process, without tests/parity_app")
    from django.apps import apps
    from django.db import connection
    from django.db.models import signals

    with connection.schema_editor() as editor:
        for model in apps.get_app_config("parity_app").get_models():
            editor.create_model(model)
    rec = Recorder({name: getattr(signals, name) for name in SIGNALS})
    yield DjangoWorld(rec)
    rec.close()
    with connection.schema_editor() as editor:
        for model in apps.get_app_config("parity_app").get_models():
            editor.delete_model(model)


@pytest.fixture(name="sa_world")
def _sa_world(engine: Engine) -> Iterator[SAWorld]:
    Base.metadata.create_all(engine)
    rec = Recorder({name: getattr(ts, name) for name in SIGNALS})
    with Session(engine, expire_on_commit=False) as session:
        yield SAWorld(rec, session)
    rec.close()
    Base.metadata.drop_all(engine)


class DjangoWorld:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        from parity_app import models

        self.m = models

    def new_author(self, name: str, books: tuple[str, ...] = ()) -> Any:
        author = self.m.Author(name=name)
        author.save()
        for title in books:
            self.m.Book(title=title, author=author).save()
        return author

    def rename(self, author: Any, name: str, *, update_fields: bool) -> None:
        author.name = name
        author.save(update_fields=["name"] if update_fields else None)

    def delete(self, obj: Any) -> None:
        obj.delete()

    def first_book(self, author: Any) -> Any:
        return author.books.order_by("pk").first()

    def retitle(self, book: Any, title: str) -> None:
        book.title = title
        book.save()

    def delete_books(self, *titles: str) -> None:
        self.m.Book.objects.filter(title__in=titles).delete()

    def raw_author(self, pk: int, name: str) -> None:
        self.m.Author(id=pk, name=name).save_base(raw=True)

    def build_and_load(self, name: str) -> None:
        self.m.Author(name=name).save()
        self.m.Author.objects.get(name=name)

    def article_and_tags(self) -> tuple[Any, Any, Any]:
        article = self.m.Article(title="a")
        article.save()
        t1, t2 = self.m.Tag(name="t1"), self.m.Tag(name="t2")
        t1.save()
        t2.save()
        return article, t1, t2

    def add(self, obj: Any, key: str, *targets: Any) -> None:
        getattr(obj, key).add(*targets)

    def remove(self, obj: Any, key: str, *targets: Any) -> None:
        getattr(obj, key).remove(*targets)

    def clear(self, obj: Any, key: str) -> None:
        getattr(obj, key).clear()


class SAWorld:
    def __init__(self, rec: Recorder, session: Session) -> None:
        self.rec = rec
        self.s = session

    def new_author(self, name: str, books: tuple[str, ...] = ()) -> Any:
        author = Author(name=name, books=[Book(title=t) for t in books])
        self.s.add(author)
        self.s.commit()
        return author

    def rename(self, author: Any, name: str, *, update_fields: bool) -> None:
        author.name = name
        self.s.commit()

    def delete(self, obj: Any) -> None:
        self.s.delete(obj)
        self.s.commit()

    def first_book(self, author: Any) -> Any:
        return min(author.books, key=lambda book: book.id)

    def retitle(self, book: Any, title: str) -> None:
        book.title = title
        self.s.commit()

    def delete_books(self, *titles: str) -> None:
        self.s.execute(delete(Book).where(Book.title.in_(titles)))
        self.s.commit()

    def raw_author(self, pk: int, name: str) -> None:
        with ts.raw_loading():
            self.s.add(Author(id=pk, name=name))
            self.s.commit()

    def build_and_load(self, name: str) -> None:
        self.s.add(Author(name=name))
        self.s.commit()
        self.s.expunge_all()  # Django has no identity map: load the row anew
        self.s.scalars(select(Author).where(Author.name == name)).one()

    def article_and_tags(self) -> tuple[Any, Any, Any]:
        objs = Article(title="a"), Tag(name="t1"), Tag(name="t2")
        self.s.add_all(objs)
        self.s.commit()
        return objs

    def add(self, obj: Any, key: str, *targets: Any) -> None:
        getattr(obj, key).extend(targets)
        self.s.commit()

    def remove(self, obj: Any, key: str, *targets: Any) -> None:
        for target in targets:
            getattr(obj, key).remove(target)
        self.s.commit()

    def clear(self, obj: Any, key: str) -> None:
        getattr(obj, key).clear()
        self.s.commit()


def save_new(w: Any) -> None:
    with w.rec.recording():
        w.new_author("a")


def save_existing_update_fields(w: Any) -> None:
    author = w.new_author("a")
    with w.rec.recording():
        w.rename(author, "b", update_fields=True)


def delete_with_cascade(w: Any) -> None:
    author = w.new_author("a", books=("1", "2"))
    with w.rec.recording():
        w.delete(author)


def delete_query(w: Any) -> None:
    """QuerySet.delete() / delete(Book).where(...): pre_delete by pk, post_delete in reverse.

    The retitle moves book 1 to the end of PostgreSQL's heap, so a SELECT
    without ORDER BY would return it last.
    """
    author = w.new_author("a", books=("1", "2", "3"))
    w.retitle(w.first_book(author), "1 (2nd edition)")
    with w.rec.recording():
        w.delete_books("1 (2nd edition)", "2", "3")


def m2m_both_sides(w: Any) -> None:
    article, t1, t2 = w.article_and_tags()
    with w.rec.recording():
        w.add(article, "tags", t1, t2)
        w.remove(article, "tags", t1)
        w.clear(t2, "articles")
        w.add(t1, "articles", article)
        w.clear(article, "tags")


def raw_loading(w: Any) -> None:
    with w.rec.recording():
        w.raw_author(41, "fixture")


SCENARIOS: list[Callable[[Any], None]] = [
    save_new,
    save_existing_update_fields,
    delete_with_cascade,
    delete_query,
    m2m_both_sides,
    raw_loading,
]


def run(world: Any, scenario: Callable[[Any], None]) -> list[Call]:
    scenario(world)
    return world.rec.calls


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_same_signals_as_django(django_world, sa_world, scenario):
    from django.db import transaction

    with transaction.atomic():
        expected = run(django_world, scenario)
        transaction.set_rollback(True)
    assert expected  # the scenario did send something
    assert run(sa_world, scenario) == expected


def test_save_existing_differs_only_in_update_fields(django_world, sa_world):
    """Deliberate: a plain save() of a changed row sends the changed columns, not None.

    Django's save() writes every column; SQLAlchemy's UPDATE sets only the
    changed ones, which is what update_fields means.
    """
    from django.db import transaction

    def scenario(w: Any) -> None:
        author = w.new_author("a")
        with w.rec.recording():
            w.rename(author, "b", update_fields=False)

    with transaction.atomic():
        expected = run(django_world, scenario)
        transaction.set_rollback(True)
    got = run(sa_world, scenario)
    assert [kw["update_fields"] for _, _, kw in expected] == [None, None]
    assert [kw["update_fields"] for _, _, kw in got] == [frozenset({"name"})] * 2
    for _, _, kw in [*expected, *got]:
        kw["update_fields"] = None
    assert got == expected


def test_init_signals_same_as_django(django_world, sa_world):
    """pre_init/post_init for a constructed object and for a row loaded from the database."""
    from django.db import transaction
    from django.db.models import signals

    django_rec = Recorder({"pre_init": signals.pre_init, "post_init": signals.post_init})
    sa_rec = Recorder({"pre_init": ts.pre_init, "post_init": ts.post_init})
    try:
        with transaction.atomic(), django_rec.recording() as expected:
            django_world.build_and_load("a")
            transaction.set_rollback(True)
        with sa_rec.recording() as got:
            sa_world.build_and_load("a")
    finally:
        django_rec.close()
        sa_rec.close()
    assert [name for name, _, _ in expected] == ["pre_init", "post_init", "pre_init", "post_init"]
    assert got == expected
