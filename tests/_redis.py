"""A throwaway ``redis-server`` for the Celery tests: Debian's binary, a free loopback port, a temp dir.

No persistence (``--save ''``, no AOF): the data lives for one test. ``stop()``
and ``start()`` again on the same port simulate a broker outage (the queued
messages are lost with it, as with a real Redis without persistence: the
relay's ``resend_after`` covers that).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "RedisUnavailableError"]


class RedisUnavailableError(RuntimeError):
    """No redis-server binary, or it would not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1; ``url`` is its ``redis://`` URL once started."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server not found: install Debian's package: apt-get install redis-server"
            raise RedisUnavailableError(msg)
        self.binary = binary
        self.tmp = Path(tempfile.mkdtemp(prefix="tocsin-redis-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.tmp),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.tmp / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.tmp / "redis.log").read_text(errors="replace")[-2000:]
                msg = f"redis-server exited with {self.process.returncode}: {log}"
                raise RedisUnavailableError(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self.url
            except OSError:
                pass
            time.sleep(0.02)  # polling a server's start-up: there is no event to wait on
        msg = "redis-server did not answer PING within 20 s"
        raise RedisUnavailableError(msg)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
