"""Users, profiles, posts, comments and likes; the search index and the notifications sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

import tocsin.sqlalchemy as ts


class Base(DeclarativeBase):
    pass


ts.install(Base)  # Django's pre_save/post_save/pre_delete/post_delete/... for every model below


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    profile: Mapped[Profile] = relationship(back_populates="user", cascade="all, delete-orphan")


class Profile(Base):
    __tablename__ = "profile"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    user: Mapped[User] = relationship(back_populates="profile")
    post_count: Mapped[int] = mapped_column(default=0)
    last_activity: Mapped[datetime | None] = mapped_column(default=None)


class Post(Base):
    __tablename__ = "post"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(default="")
    published: Mapped[bool] = mapped_column(default=False)
    comment_count: Mapped[int] = mapped_column(default=0)
    like_count: Mapped[int] = mapped_column(default=0)
    view_count: Mapped[int] = mapped_column(default=0)
    comments: Mapped[list[Comment]] = relationship(cascade="all, delete-orphan")
    likes: Mapped[list[Like]] = relationship(cascade="all, delete-orphan")


class Comment(Base):
    __tablename__ = "comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str]


class Like(Base):
    __tablename__ = "like"
    __table_args__ = (UniqueConstraint("post_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class SearchEntry(Base):
    """The search index: written only by the background indexer."""

    __tablename__ = "search_entry"
    post_id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
    indexed: Mapped[int] = mapped_column(default=1)  # how many times the indexer wrote this entry


class Notification(Base):
    """What the background notifier 'sent' (a real app would call a mail or push service)."""

    __tablename__ = "notification"
    __table_args__ = (UniqueConstraint("job_id", "user_id"),)  # a retried job notifies nobody twice
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    message: Mapped[str]
    job_id: Mapped[str]
