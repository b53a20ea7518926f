"""Denormalised counters kept by model signals, in the same transaction as the change.

Counters move with SQL (``count = count + 1``), never by reading and writing
back a Python value, so two concurrent comments both count. Each change also
sends ``post_changed`` **after COMMIT** (``send_on_commit``): evicting a cache
before the COMMIT lets a concurrent reader cache the old row again.
"""

from datetime import datetime, timezone

from sqlalchemy import update
from sqlalchemy.orm import Session

import tocsin.sqlalchemy as ts
from blog.models import Comment, Like, Post, Profile, User
from blog.signals import post_changed, post_viewed
from tocsin import receiver


def _touch(session, user_id, **counters):
    values = {"last_activity": datetime.now(timezone.utc)}
    values.update({name: getattr(Profile, name) + step for name, step in counters.items()})
    session.execute(update(Profile).where(Profile.user_id == user_id).values(values))


def _changed(session, post_id):
    ts.send_on_commit(post_changed, Post, session, post_id=post_id)


@receiver(ts.post_save, sender=User)
def create_profile(sender, instance, created, **kwargs):
    if created:
        Session.object_session(instance).add(Profile(user_id=instance.id))


@receiver(ts.post_save, sender=Post)
def count_posts(sender, instance, created, **kwargs):
    session = Session.object_session(instance)
    if created:
        _touch(session, instance.author_id, post_count=1)
    else:
        _changed(session, instance.id)


@receiver(ts.post_delete, sender=Post)
def uncount_posts(sender, instance, **kwargs):
    session = Session.object_session(instance)
    _touch(session, instance.author_id, post_count=-1)
    _changed(session, instance.id)


def _count(session, post_id, column, step):
    session.execute(update(Post).where(Post.id == post_id).values({column: getattr(Post, column) + step}))
    _changed(session, post_id)


@receiver(ts.post_save, sender=Comment)
def count_comments(sender, instance, created, **kwargs):
    if created:
        session = Session.object_session(instance)
        _count(session, instance.post_id, "comment_count", 1)
        _touch(session, instance.author_id)


@receiver(ts.post_delete, sender=Comment)
def uncount_comments(sender, instance, origin, **kwargs):
    if not isinstance(origin, Post):  # deleted with its post: nothing left to count
        _count(Session.object_session(instance), instance.post_id, "comment_count", -1)


@receiver(ts.post_save, sender=Like)
def count_likes(sender, instance, created, **kwargs):
    if created:
        session = Session.object_session(instance)
        _count(session, instance.post_id, "like_count", 1)
        _touch(session, instance.user_id)


@receiver(ts.post_delete, sender=Like)
def uncount_likes(sender, instance, origin, **kwargs):
    if not isinstance(origin, Post):
        _count(Session.object_session(instance), instance.post_id, "like_count", -1)


@receiver(post_viewed)
def count_views(sender, post_id, session, **kwargs):
    # Views are not on the cached page: counting one evicts nothing.
    session.execute(update(Post).where(Post.id == post_id).values(view_count=Post.view_count + 1))
