"""Shared fixtures: real databases for the SQLAlchemy integration tests.

Fixtures (all real databases, no mocks):

* ``db_url``: a SQLAlchemy URL, parametrized over ``sqlite-memory``,
  ``sqlite-file`` and ``postgresql``. Each PostgreSQL test gets its own fresh
  schema (first on the URL's ``search_path``) on the session's server.
* ``engine``: a sync ``Engine`` for ``db_url``, disposed after the test.
  SQLite engines get SQLAlchemy's BEGIN recipe so SAVEPOINTs nest for real.
* ``async_db_url`` / ``run_async_db``: the same three backends through
  aiosqlite and psycopg's async driver. ``run_async_db(body)`` runs
  ``await body(async_engine)`` under ``asyncio.run`` and disposes the engine
  in the same event loop.
* ``postgres_url``: the session's PostgreSQL server (database ``postgres``).

Every test must leave the process-wide state it can change as it found it
(global interceptors, the receiver observer, the ``tocsin`` logger, installs
on sessionmakers, cwd, sys.path, os.environ): an autouse fixture fails the
test that leaks, since the suite runs in random order (pytest-randomly) and
a leak would otherwise break some later test, in some orders only.

The server is started only when a PostgreSQL test runs. Without the server
binaries those tests skip, naming the Debian package; with ``CI=true`` they
fail instead, so CI cannot go green without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests run in importlib mode

from _postgres import PostgresServer, PostgresUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

DATABASES = ("sqlite-memory", "sqlite-file", "postgresql")
_counter = itertools.count()


def _global_state() -> dict[str, Any]:
    """The process-wide state that tests change and must restore, by what leaves it changed."""
    from tocsin._core import hooks as _hooks
    from tocsin._core.records import is_weak
    from tocsin._tools import mute as _mute

    logger = logging.getLogger("tocsin")
    models = sys.modules.get("tocsin.sqlalchemy._models")
    return {
        "global interceptors (a mute/capture/trace/observe left on)": _hooks.global_interceptors(),
        "receiver observer (a trace/observe left on)": _hooks.receiver_observer,
        "logger 'tocsin' (level, disabled, propagate, handlers)": (
            logger.level,
            logger.disabled,
            logger.propagate,
            tuple(logger.handlers),
        ),
        # Strong ones only: a weak receiver left behind dies with the test
        # (at the next garbage collection, which comes when it comes).
        # (A signal first imported by the test, with none, is no leak.)
        "strong connections to tocsin's own signals": {
            name: keys
            for name, keys in (
                (
                    f"{sig.module}.{sig.name}",
                    frozenset(key for key, record in sig._records.items() if not is_weak(record)),
                )
                for sig in _hooks.live_signals()
                if sig.module == "tocsin" or (sig.module or "").startswith("tocsin.")
            )
            if keys
        },
        "mute blocks left open": {f"{sig!r}": depths for sig, depths in _mute._depths.items()},
        "connection watcher (a meta-signal receiver left connected)": _hooks.connection_watcher,
        "logging.disable()": logging.root.manager.disable,
        "tocsin.sqlalchemy.install(sessionmaker)": list(models._everywhere) if models else [],
        "cwd": Path.cwd(),
        "sys.path": list(sys.path),
        "os.environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
    }


def _change(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):  # only the keys that changed
        keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        before = {k: before.get(k) for k in keys}
        after = {k: after.get(k) for k in keys}
    return f"{before!r} -> {after!r}"


@pytest.fixture(autouse=True)
def _no_leaked_global_state() -> Iterator[None]:
    """Fail a test that leaves global state changed (set up first, so checked last)."""
    before = _global_state()
    yield
    after = _global_state()
    leaked = [
        f"{what}: {_change(before[what], after[what])}" for what in after if before[what] != after[what]
    ]
    if leaked:
        pytest.fail("the test leaked process-wide state:\n" + "\n".join(leaked), pytrace=False)


def _unavailable(msg: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and PostgreSQL is unavailable: {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session", name="postgres_url")
def _postgres_url() -> Iterator[str]:
    if importlib.util.find_spec("psycopg") is None:
        _unavailable("psycopg is not installed: pip install 'psycopg[binary]'")
    try:
        server = PostgresServer()
        url = server.start()
    except PostgresUnavailableError as exc:
        _unavailable(str(exc))
        raise  # unreachable: skip/fail raise
    try:
        yield url
    finally:
        server.stop()


def _fresh_postgres_schema(postgres_url: str) -> Iterator[str]:
    """Give one test its own schema, first on its connections' search_path.

    A schema costs a millisecond where CREATE DATABASE costs a quarter
    second. It is dropped after the test; a lock held by a connection the
    test leaked only leaves it behind, on a server that is thrown away.
    """
    from sqlalchemy import create_engine, text

    name = f"t{os.getpid()}_{next(_counter)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield f"{postgres_url}?options=-csearch_path%3D{name}"
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '2s'"))
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    finally:
        admin.dispose()


def _url_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path, *, driver: str) -> Iterator[str]:
    if kind == "sqlite-memory":
        yield f"sqlite+{driver}://"
    elif kind == "sqlite-file":
        yield f"sqlite+{driver}:///{tmp_path / 'test.db'}"
    else:
        yield from _fresh_postgres_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture(name="db_url", params=DATABASES)
def _db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _url_for(request.param, request, tmp_path, driver="pysqlite")


def nested_sqlite(engine: Engine) -> Engine:
    """Make SAVEPOINTs nest on a pysqlite/aiosqlite engine (SQLAlchemy's recipe).

    The sqlite3 module's legacy transaction handling issues BEGIN lazily, so
    a SAVEPOINT sent first opens its own transaction instead of nesting.
    Letting SQLAlchemy send BEGIN itself fixes that. Python 3.12's
    ``autocommit=False`` would too, but we support 3.10.
    """
    from sqlalchemy import event

    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


@pytest.fixture(name="engine")
def _engine(db_url: str) -> Iterator[Engine]:
    from sqlalchemy import create_engine

    engine = nested_sqlite(create_engine(db_url))
    yield engine
    engine.dispose()


@pytest.fixture(name="async_db_url", params=DATABASES)
def _async_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if importlib.util.find_spec("aiosqlite") is None:
        pytest.skip("aiosqlite is not installed")
    yield from _url_for(request.param, request, tmp_path, driver="aiosqlite")


@pytest.fixture(name="run_async_db")
def _run_async_db(async_db_url: str) -> Callable[[Callable[[AsyncEngine], Awaitable[None]]], None]:
    from sqlalchemy.ext.asyncio import create_async_engine

    def run(body: Callable[[AsyncEngine], Awaitable[None]]) -> None:
        async def main() -> None:
            engine = create_async_engine(async_db_url)
            nested_sqlite(engine.sync_engine)
            try:
                await body(engine)
            finally:
                await engine.dispose()

        asyncio.run(main())

    return run
