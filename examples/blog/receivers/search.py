"""The search index, updated by a background receiver in batches.

Every save or delete of a post sends ``index_stale`` in its transaction; the
background ``reindex`` then reads the post fresh and writes (or removes) its
entry. ``key=`` keeps at most one queued job per post, and ``delay=`` lets a
burst of saves fold into it: four saves in a row, one reindex. Taking the
post's id rather than the instance means a post deleted before its job runs
is simply unindexed.
"""

from sqlalchemy.orm import Session

import tocsin.sqlalchemy as ts
from blog.db import Session as Sessions
from blog.jobs import jobs
from blog.models import Post, SearchEntry
from tocsin import Signal, receiver

index_stale = Signal(name="index_stale", doc="A post's search entry is out of date. Sends post_id=.")


@receiver(ts.post_save, sender=Post)
@receiver(ts.post_delete, sender=Post)
def post_written(sender, instance, **kwargs):
    with ts.use_session(Session.object_session(instance)):  # the job commits with the post
        index_stale.send(sender=Post, post_id=instance.id)


def _post_key(post_id, **kwargs):
    return f"index:post:{post_id}"


@receiver(index_stale, via=jobs.later(retries=3, backoff=0.05, key=_post_key, delay=0.5))
def reindex(sender, post_id, job, **kwargs):
    with Sessions.begin() as session:
        post, entry = session.get(Post, post_id), session.get(SearchEntry, post_id)
        if post is None or not post.published:
            if entry is not None:
                session.delete(entry)
        elif entry is None:
            session.add(SearchEntry(post_id=post_id, text=f"{post.title}\n{post.body}"))
        else:
            entry.text, entry.indexed = f"{post.title}\n{post.body}", entry.indexed + 1
