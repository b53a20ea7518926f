"""The blog's HTTP API (FastAPI), with request signals, model signals and background jobs.

Run it: ``uvicorn blog.app:app`` from ``examples/`` (the demo starts it for you).
Each write runs in one transaction: the model signals' counters, the jobs of
the background receivers and the ``post_changed`` broadcast all commit with
the data, or not at all.
"""

from __future__ import annotations

import contextlib
import os
import statistics

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import func, select

import tocsin
import tocsin.sqlalchemy as ts
from tocsin.asgi import RequestSignalsMiddleware

from . import state
from .bus import bus
from .db import Session, engine
from .jobs import jobs
from .models import Base, Comment, Like, Notification, Post, Profile, SearchEntry, User
from .signals import post_liked, post_published, post_viewed, user_registered


@contextlib.asynccontextmanager
async def lifespan(app):
    # Startup, Django's AppConfig.ready(): import blog.signals and blog.receivers, connecting every receiver.
    tocsin.autodiscover("blog")
    Base.metadata.create_all(engine)
    async with bus:  # listen to the other processes' post_changed while serving
        yield


app = FastAPI(title="The signals blog", lifespan=lifespan)
app.add_middleware(RequestSignalsMiddleware)


@contextlib.contextmanager
def transaction():
    """One transaction; sends inside it find it (jobs are written in it, on_commit waits for it)."""
    with Session.begin() as session, ts.use_session(session):
        yield session


class NewUser(BaseModel):
    name: str


class NewPost(BaseModel):
    author_id: int
    title: str
    body: str = ""


class Edit(BaseModel):
    title: str | None = None
    body: str | None = None


class NewComment(BaseModel):
    author_id: int
    text: str


class NewLike(BaseModel):
    user_id: int


def _get(session, model, key):
    found = session.get(model, key)
    if found is None:
        raise HTTPException(404, f"no {model.__name__.lower()} {key}")
    return found


@app.post("/users", status_code=201)
def register(data: NewUser):
    with transaction() as session:
        user = User(name=data.name)
        session.add(user)
        session.flush()  # post_save creates the profile
        user_registered.send(sender=User, user=user)  # the welcome job commits with the user
        return {"id": user.id}


@app.post("/posts", status_code=201)
def create_post(data: NewPost):
    with transaction() as session:
        post = Post(author_id=data.author_id, title=data.title, body=data.body)
        session.add(post)
        session.flush()
        return {"id": post.id}


@app.patch("/posts/{post_id}")
def edit_post(post_id: int, data: Edit):
    with transaction() as session:
        post = _get(session, Post, post_id)
        post.title = data.title if data.title is not None else post.title
        post.body = data.body if data.body is not None else post.body
    return {"id": post_id}


@app.post("/posts/{post_id}/publish")
def publish(post_id: int):
    with transaction() as session:
        post = _get(session, Post, post_id)
        post.published = True
        session.flush()
        post_published.send(sender=Post, post=post)
    return {"id": post_id}


@app.post("/posts/{post_id}/comments", status_code=201)
def comment(post_id: int, data: NewComment):
    with transaction() as session:
        _get(session, Post, post_id)
        item = Comment(post_id=post_id, author_id=data.author_id, text=data.text)
        session.add(item)
        session.flush()
        return {"id": item.id}


@app.post("/posts/{post_id}/likes", status_code=201)
def like(post_id: int, data: NewLike):
    with transaction() as session:
        post, user = _get(session, Post, post_id), _get(session, User, data.user_id)
        session.add(Like(post_id=post_id, user_id=user.id))
        session.flush()
        post_liked.send(sender=Post, post=post, user=user)
    return {"id": post_id}


def _page(post_id):
    with Session() as session:
        post = session.get(Post, post_id)
        if post is None:
            return None
        author = session.get(User, post.author_id)
        return {
            "id": post.id,
            "title": post.title,
            "author": author.name,
            "body": post.body,
            "comments": post.comment_count,
            "likes": post.like_count,
        }


@app.get("/posts/{post_id}")
def read_post(post_id: int):
    page = state.cached_page(post_id, _page)
    if page is None:
        raise HTTPException(404, f"no post {post_id}")
    with transaction() as session:
        post_viewed.send(sender=Post, post_id=post_id, session=session)
    return page


@app.delete("/posts/{post_id}", status_code=204)
def delete_post(post_id: int):
    with transaction() as session:
        session.delete(_get(session, Post, post_id))


@app.get("/search")
def search(q: str):
    with Session() as session:
        rows = session.scalars(select(SearchEntry.post_id).where(SearchEntry.text.contains(q)))
        return {"post_ids": sorted(rows)}


@app.get("/stats")
def stats():
    """What happened, for the demo's summary: the database's counters and this process's view."""
    # The jobs first: when none is left, the reads below (a later snapshot) see all their work.
    pending = {state: len(jobs.list(state)) for state in ("queued", "running", "failed")}
    dead_letters = [f"{j.receiver}: {j.last_error.strip().splitlines()[-1]}" for j in jobs.failed()]
    with Session() as session:
        users = session.execute(select(User.name, Profile.post_count).join(Profile)).all()
        posts = session.scalars(select(Post).order_by(Post.id)).all()
        return {
            "process": os.getpid(),
            "profiles": dict(users),
            "posts": {
                p.id: {"comments": p.comment_count, "likes": p.like_count, "views": p.view_count}
                for p in posts
            },
            "notifications": [
                f"to {name}: {message}"
                for name, message in session.execute(
                    select(User.name, Notification.message).join(User).order_by(Notification.id)
                )
            ],
            "index": {e.post_id: e.indexed for e in session.scalars(select(SearchEntry))},
            "jobs": pending,
            "dead_letters": dead_letters,
            "cache": dict(state.cache_stats),
            "bus": {name: getattr(bus.status, name) for name in ("state", "published", "received", "gaps")},
            "requests": {
                route: {"count": len(times), "median_ms": round(statistics.median(times) * 1000, 2)}
                for route, times in sorted(state.request_durations.items())
            },
            "comments_total": session.scalar(select(func.count()).select_from(Comment)),
        }
