"""The database: one SQLite file, shared by the app processes and the worker."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, event
from sqlalchemy.orm import sessionmaker

DATABASE = os.environ.get("BLOG_DATABASE", "blog.db")

engine = create_engine(f"sqlite:///{DATABASE}", connect_args={"timeout": 30})


@event.listens_for(engine, "connect")
def _sqlite_pragmas(connection, record):
    # WAL: readers never wait for the writer (the app and the worker share the file).
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


Session = sessionmaker(engine, expire_on_commit=False)
