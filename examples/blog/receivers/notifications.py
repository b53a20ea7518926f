"""Notifications, sent by background receivers: after COMMIT, retried, never lost.

Each runs in a worker with the models loaded fresh and a Session that commits
when the receiver returns. ``job.id`` makes them idempotent: a job runs at
least once (again if a worker dies mid-job); one notification row per job id
and user means a rerun notifies nobody twice.
"""

from sqlalchemy import select
from sqlalchemy.orm import Session

import tocsin.sqlalchemy as ts
from blog.jobs import jobs
from blog.models import Notification, Post, User
from blog.signals import post_liked, post_published, user_registered
from tocsin import receiver


def _notify(session, user_id, message, job):
    if (
        session.scalar(
            select(Notification.id).where(Notification.job_id == job.id, Notification.user_id == user_id)
        )
        is None
    ):
        session.add(Notification(user_id=user_id, message=message, job_id=job.id))


@receiver(user_registered, via=jobs.later(retries=3, backoff=0.05))
def welcome(sender, user, job, **kwargs):
    _notify(Session.object_session(user), user.id, f"Welcome, {user.name}!", job)


@receiver(post_published, via=jobs.later(retries=3, backoff=0.05))
def tell_readers(sender, post, job, **kwargs):
    session = Session.object_session(post)
    author = session.get(User, post.author_id)
    for reader in session.scalars(select(User).where(User.id != post.author_id)):
        _notify(session, reader.id, f"{author.name} published {post.title!r}", job)


@receiver(post_liked, via=jobs.later(retries=3, backoff=0.05))
def tell_author_of_like(sender, post, user, job, **kwargs):
    _notify(Session.object_session(post), post.author_id, f"{user.name} liked {post.title!r}", job)


@receiver(ts.post_save, sender="Comment", via=jobs.later(retries=3, backoff=0.05))
def tell_author_of_comment(sender, instance, created, job, **kwargs):
    if created:
        session = Session.object_session(instance)
        post, commenter = session.get(Post, instance.post_id), session.get(User, instance.author_id)
        if post.author_id != commenter.id:
            _notify(session, post.author_id, f"{commenter.name} commented on {post.title!r}", job)


class PartnerFeedDownError(ConnectionError):
    """The demo's partner feed never answers: an intentional failure."""


@receiver(post_published, via=jobs.later(retries=2, backoff=0.05))
def ping_partner_feed(sender, post, job, **kwargs):
    # Intentional failure: 3 attempts (1 + 2 retries) with backoff, then a dead
    # letter you can inspect and replay: `tocsin jobs failed` / `tocsin jobs retry`.
    msg = "partner feed is down (an intentional demo failure)"
    raise PartnerFeedDownError(msg)
