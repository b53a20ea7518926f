"""A throwaway PostgreSQL server for the test session.

``PostgresServer`` runs ``initdb`` and ``pg_ctl`` from the Debian package
(``/usr/lib/postgresql/<version>/bin``) in a fresh temporary directory, on a
free port of 127.0.0.1, with its Unix socket inside that directory. It never
touches the system cluster the package may have started (other datadir, port
and socket), so that cluster may be running or not.

PostgreSQL refuses to run as root. When the tests run as root (as in CI), the
data directory is handed to the ``postgres`` system user the package
creates (or to a ``tocsin-pg`` system user created here if it is missing),
and every server command runs through ``runuser -u <user> --``.

Durability is switched off (``fsync=off`` and friends): the data lives for one
test session.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailableError", "find_bindir"]

DEBIAN_PACKAGE = "postgresql"
_FALLBACK_USER = "tocsin-pg"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries, or the server would not start."""


def find_bindir() -> Path:
    """Return the newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl.

    ``TOCSIN_PG_BINDIR`` overrides the search (for non-Debian systems).
    """
    override = os.environ.get("TOCSIN_PG_BINDIR")
    candidates = [override] if override else [str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")]

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)

    for path in sorted(candidates, key=version, reverse=True):
        if (Path(path) / "initdb").is_file() and (Path(path) / "pg_ctl").is_file():
            return Path(path)
    msg = (
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
        f"install the Debian package: apt-get install {DEBIAN_PACKAGE} "
        "(or set TOCSIN_PG_BINDIR to a directory holding initdb and pg_ctl)"
    )
    raise PostgresUnavailableError(msg)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> str | None:
    """The unprivileged user to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return _FALLBACK_USER


class PostgresServer:
    """One PostgreSQL server in a temporary directory; ``start()`` then ``stop()``.

    Attributes:
        url: the SQLAlchemy URL (``postgresql+psycopg://``) of database
            ``postgres``, user ``postgres``, trust authentication; set by
            ``start()``.
    """

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.user = _server_user()
        self.tmp: Path | None = None
        self.port = 0
        self.url = ""

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        # The server writes to its log file, never to our pipes, so pg_ctl's
        # daemonized postmaster does not keep this call waiting.
        return subprocess.run(
            [*prefix, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.tmp,
        )

    def start(self) -> str:
        """Create the cluster, start the server, wait until it accepts connections."""
        # /tmp rather than $TMPDIR: the server user must reach it, and the
        # Unix socket's path must stay under ~100 bytes.
        base = "/tmp" if Path("/tmp").is_dir() else None
        self.tmp = Path(tempfile.mkdtemp(prefix="tocsin-pg-", dir=base))
        atexit.register(self.stop)  # in case the test session dies before its teardown
        datadir = self.tmp / "data"
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.tmp, entry.pw_uid, entry.pw_gid)
        self.tmp.chmod(0o700)
        done = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if done.returncode:
            self.stop()
            msg = f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            raise PostgresUnavailableError(msg)
        log = self.tmp / "server.log"
        for _attempt in range(5):  # a free port can be taken before the server binds it
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=50"
            )
            done = self._run(
                str(self.bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", options, "-w", "start"
            )
            if done.returncode == 0:
                break
        else:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            msg = f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{tail}"
            raise PostgresUnavailableError(msg)
        self._wait_ready()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        return self.url

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        isready = str(self.bindir / "pg_isready")
        while True:
            done = self._run(isready, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", timeout=10)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                msg = f"PostgreSQL did not become ready in {timeout} s: {done.stdout}{done.stderr}"
                raise PostgresUnavailableError(msg)
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self.tmp is None:
            return
        datadir = self.tmp / "data"
        if (datadir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None
