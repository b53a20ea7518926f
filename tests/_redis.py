"""A throwaway ``redis-server`` for the tests: Debian's binary, a free loopback port, a temp dir.

No persistence (``--save ''``, no AOF): the data lives for one test. ``stop()``
and ``start()`` again on the same port simulate a broker outage (the queued
messages are lost with it, as with a real Redis without persistence: the
relay's ``resend_after`` covers that).

``RedisServer(unix_socket=True)`` listens on a unix socket only (``--port 0``,
``url`` is ``unix:///.../redis.sock``); ``RedisServer(tls=TlsFiles(...))`` on a
TLS port only (``url`` is ``rediss://127.0.0.1:<port>/0``, without the CA:
the test adds it). ``make_tls_files()`` makes a CA and a certificate for
127.0.0.1 signed by it with the ``openssl`` command (Debian's package).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RedisServer", "RedisUnavailableError", "TlsFiles", "make_tls_files"]


class RedisUnavailableError(RuntimeError):
    """No redis-server (or openssl) binary, or it would not start."""


@dataclass(frozen=True)
class TlsFiles:
    """A CA certificate, and a server certificate and key it signed (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        msg = "openssl not found: install Debian's package: apt-get install openssl"
        raise RedisUnavailableError(msg)
    subprocess.run([binary, *args], check=True, capture_output=True)


def make_tls_files(
    directory: Path, name: str = "test", hosts: str = "IP:127.0.0.1,DNS:localhost"
) -> TlsFiles:
    """A new CA (``<name>-ca.pem``) and a certificate for *hosts* (its subjectAltName) that it signed.

    The extensions are the ones Python's strict verification (3.13's
    ``VERIFY_X509_STRICT``) requires: a critical CA basic constraint, key
    identifiers, a server certificate that is not a CA.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", f"/CN=tocsin {name} CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    _openssl("req", "-new", *curve, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={hosts}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid:always\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    return TlsFiles(ca=ca, cert=cert, key=key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1 (or a unix socket, or TLS); ``url`` is its URL once started."""

    def __init__(self, *, unix_socket: bool = False, tls: TlsFiles | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server not found: install Debian's package: apt-get install redis-server"
            raise RedisUnavailableError(msg)
        self.binary = binary
        self.tmp = Path(tempfile.mkdtemp(prefix="tocsin-redis-"))
        self.port = _free_port()
        self.tls = tls
        self.socket_path: Path | None = self.tmp / "redis.sock" if unix_socket else None
        if self.socket_path is not None:
            self.url = f"unix://{self.socket_path}"
        elif tls is not None:
            self.url = f"rediss://127.0.0.1:{self.port}/0"
        else:
            self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def _listen_args(self) -> list[str]:
        if self.socket_path is not None:
            return ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self.tls is not None:
            return [
                *("--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"),
                *("--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)),
                *("--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"),
            ]
        return ["--port", str(self.port), "--bind", "127.0.0.1"]

    def _connect(self) -> socket.socket:
        if self.socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(1)
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                sock.close()
                raise
            return sock
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        if self.tls is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.check_hostname = False  # a readiness probe: the certificate may name another host
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def start(self) -> str:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                *self._listen_args(),
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
                with self._connect() as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self.url
            except OSError:
                pass
            time.sleep(0.02)  # polling a server's start-up: there is no event to wait on
        self.stop()
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
