"""Django's model signals on SQLAlchemy models, with tocsin.sqlalchemy (SQLite in memory).

Shows: install(Base), pre_save editing the instance, post_save writing a row
in the same transaction, update_fields, cascade delete with origin,
m2m_changed from both sides, and a receiver error rolling everything back.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String, Table, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import tocsin.sqlalchemy as ts


class Base(DeclarativeBase):
    pass


ts.install(Base)

article_tag = Table(
    "article_tag",
    Base.metadata,
    Column("article_id", ForeignKey("article.id"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id"), primary_key=True),
)


class Article(Base):
    __tablename__ = "article"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100), default="")
    comments: Mapped[list[Comment]] = relationship(cascade="all, delete-orphan")
    tags: Mapped[list[Tag]] = relationship(secondary=article_tag, back_populates="articles")


class Comment(Base):
    __tablename__ = "comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id"))
    text: Mapped[str] = mapped_column(String(100))


class Tag(Base):
    __tablename__ = "tag"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    articles: Mapped[list[Article]] = relationship(secondary=article_tag, back_populates="tags")


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(200))


@ts.pre_save.connect(sender=Article)
def slugify(sender, instance, update_fields, **kwargs):
    instance.slug = instance.title.lower().replace(" ", "-")


@ts.post_save.connect(sender="Article")  # lazily named, like Django's "app.Model"
def audit(sender, instance, created, update_fields, **kwargs):
    what = "created" if created else f"updated {sorted(update_fields)}"
    Session.object_session(instance).add(AuditLog(message=f"article {instance.slug} {what}"))


@ts.pre_delete.connect
def announce_delete(sender, instance, origin, **kwargs):
    print(f"  pre_delete  {sender.__name__} (origin: {type(origin).__name__})")


@ts.m2m_changed.connect(sender=article_tag)
def tags_changed(sender, instance, action, **kwargs):
    print(f"  m2m_changed {action:<11} on {type(instance).__name__} ", end="")
    print(f"reverse={kwargs['reverse']} model={kwargs['model'].__name__} pk_set={kwargs['pk_set']}")


engine = create_engine("sqlite://")
Base.metadata.create_all(engine)

with Session(engine) as session:
    article = Article(title="Hello World", comments=[Comment(text="first"), Comment(text="second")])
    session.add(article)
    session.commit()
    article.title = "Hello Again"
    session.commit()
    print("slug:", article.slug)
    for message in session.scalars(select(AuditLog.message)):
        print("audit:", message)

    python, sql = Tag(name="python"), Tag(name="sql")
    session.add_all([python, sql])
    session.commit()
    print("m2m:")
    article.tags.extend([python, sql])  # forward side
    session.commit()
    sql.articles.clear()  # reverse side
    session.commit()

    print("delete with cascade:")
    session.delete(article)
    session.commit()


def refuse(sender, instance, **kwargs):
    msg = f"no saving {instance.title!r}"
    raise PermissionError(msg)


ts.pre_save.connect(refuse, sender=Article)
with Session(engine) as session:
    session.add(Article(title="Forbidden"))
    try:
        session.commit()
    except PermissionError as exc:
        session.rollback()
        print("refused:", exc)
    forbidden = session.scalar(select(func.count()).where(Article.title == "Forbidden"))
    print("forbidden articles saved:", forbidden)
    assert forbidden == 0
