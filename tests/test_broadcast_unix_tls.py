"""tocsin.broadcast over a real redis-server on a unix socket only, and on a TLS port only.

The servers listen nowhere else (``--port 0``): a round trip proves the bus
used the socket, or TLS, since there is no other way in. The TLS server's
certificate is signed by a CA this test makes with ``openssl``; a bus
trusting another CA (or only the system's) must be refused, never fall
back to plaintext. Tests wait on events and on status polling with
deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest

from _redis import RedisServer, RedisUnavailableError, TlsFiles, make_tls_files
from test_broadcast import Node, make_nodes, until
from tocsin.broadcast import Bus, BusConfigurationError, _resp, is_remote

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

needs_redis_py = pytest.mark.skipif(
    importlib.util.find_spec("redis") is None, reason="redis-py is not installed: pip install 'tocsin[redis]'"
)


def _started(server: Callable[[], RedisServer]) -> RedisServer:
    try:
        made = server()
        made.start()
    except RedisUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and redis-server (or openssl) is unavailable: {exc}", pytrace=False)
        pytest.skip(str(exc))
    return made


def _serving(server: Callable[[], RedisServer]) -> Iterator[RedisServer]:
    started = _started(server)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(name="unix_redis")
def _unix_redis() -> Iterator[RedisServer]:
    yield from _serving(lambda: RedisServer(unix_socket=True))


@pytest.fixture(name="tls")
def _tls(tmp_path: Path) -> TlsFiles:
    try:
        return make_tls_files(tmp_path / "tls")
    except RedisUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and openssl is unavailable: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(name="tls_redis")
def _tls_redis(tls: TlsFiles) -> Iterator[RedisServer]:
    yield from _serving(lambda: RedisServer(tls=tls))


@pytest.fixture(name="nodes")
def _nodes() -> Iterator[Callable[..., Node]]:
    yield from make_nodes()


def _round_trip(a: Node, b: Node) -> None:
    """A send on *a* arrives on *b* (with its origin) and not back on *a*; and the other way round."""
    a.signal.send("writer", post_id=1)
    b.inbox.wait_count(1)
    sender, kwargs = b.inbox.calls[0]
    assert (sender, kwargs["post_id"], kwargs["origin"].process) == ("writer", 1, a.bus.origin_id())
    b.signal.send(None, post_id=2)  # the marker: a would get its own message back before it
    a.inbox.wait_count(2)
    assert a.inbox.values("post_id") == [1, 2]
    assert [is_remote(kwargs) for _sender, kwargs in a.inbox.calls] == [False, True]
    assert [kwargs["reason"] for _sender, kwargs in a.gaps.calls] == ["subscribed"]


def _attempts(bus: Bus) -> threading.Semaphore:
    """Count the listener's connection attempts (the real transport does the work)."""
    counted = threading.Semaphore(0)
    listen = bus._transport.listen  # type: ignore[attr-defined] # the test counts attempts

    def counting(*args: Any) -> None:
        counted.release()
        listen(*args)

    bus._transport.listen = counting  # type: ignore[method-assign]
    return counted


# ---- unix sockets -----------------------------------------------------------


def test_pubsub_over_a_unix_socket(unix_redis: RedisServer, nodes: Callable[..., Node]) -> None:
    """``unix:///path``: tocsin's own RESP client over AF_UNIX (the server has no TCP port)."""
    assert unix_redis.url.startswith("unix:///")
    a, b = nodes(unix_redis.url), nodes(unix_redis.url)
    _round_trip(a, b)
    assert b.bus.flush()  # its counter moves once the reply is read, maybe after a got the message
    assert (a.bus.status.published, b.bus.status.published) == (1, 1)


@needs_redis_py
def test_streams_over_a_unix_socket(unix_redis: RedisServer, nodes: Callable[..., Node]) -> None:
    """``unix+stream:///path``: Redis Streams (redis-py) over the same socket."""
    url = unix_redis.url.replace("unix://", "unix+stream://", 1)
    a, b = nodes(url), nodes(url)
    _round_trip(a, b)


@pytest.mark.parametrize("scheme", ["unix", pytest.param("unix+stream", marks=needs_redis_py)])
def test_a_missing_socket_is_named_in_the_error_and_warned_about_once(
    unix_redis: RedisServer, nodes: Callable[..., Node], scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener keeps retrying, with an error naming the path; one warning and one reconnect per loss."""
    missing = unix_redis.tmp / "nothing-here.sock"
    node = nodes(f"{scheme}://{missing}", start=False, max_backoff=0.05)
    attempts = _attempts(node.bus)
    with caplog.at_level(logging.WARNING, logger="tocsin"):
        assert not node.bus.start(wait=0)
        for _ in range(4):
            assert attempts.acquire(timeout=10)  # a fourth attempt began: three failed
    status = node.bus.status
    assert status.state in {"connecting", "disconnected"}
    assert status.last_error is not None
    assert str(missing) in status.last_error
    assert "No such file or directory" in status.last_error
    if scheme == "unix":  # tocsin's own client says what was expected and how to fix it
        assert f"'unixsocket {missing}' in redis.conf" in status.last_error
        assert "fix the path in the URL or start the server" in status.last_error
    assert status.reconnects == 1
    warnings = [r.getMessage() for r in caplog.records if "lost its connection" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_a_bus_waiting_for_its_socket_connects_when_the_server_starts(nodes: Callable[..., Node]) -> None:
    """A missing socket is retried, not fatal: the server may start after the application."""
    server = _started(lambda: RedisServer(unix_socket=True))
    server.stop()  # now the path is known, and nothing listens there
    try:
        node = nodes(server.url, start=False, max_backoff=0.05)
        assert not node.bus.start(wait=0)
        until(lambda: node.bus.status.last_error is not None, timeout=10, what="a failed attempt")
        server.start()
        node.gaps.wait_count(1)
        assert node.bus.status.state == "connected"
    finally:
        server.close()


@pytest.mark.parametrize("form", ["netloc", "query"])
def test_a_password_protected_unix_socket(
    unix_redis: RedisServer, nodes: Callable[..., Node], form: str
) -> None:
    """``unix://:pw@/path`` and redis-py's ``unix:///path?password=pw``; the password never shows."""
    with socket.socket(socket.AF_UNIX) as admin:
        admin.connect(str(unix_redis.socket_path))
        admin.sendall(_resp.command(b"CONFIG", b"SET", b"requirepass", b"s3cret"))
        assert _resp.read_replies(admin, 1) == [b"OK"]
    path = unix_redis.socket_path

    def url(password: str) -> str:
        return f"unix://:{password}@{path}" if form == "netloc" else f"unix://{path}?db=0&password={password}"

    a, b = nodes(url("s3cret")), nodes(url("s3cret"))
    _round_trip(a, b)
    for bus in (a.bus, b.bus):
        assert "s3cret" not in repr(bus)
        assert "s3cret" not in bus.url
        assert "s3cret" not in str(b.inbox.calls[0][1]["origin"])
    refused = nodes(url("wrong"), start=False)
    assert not refused.bus.start(wait=0.5)
    until(lambda: refused.bus.status.last_error is not None, timeout=10, what="the AUTH error")
    assert "AUTH refused" in str(refused.bus.status.last_error)
    assert "wrong" not in repr(refused.bus)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0?password=s3cret",
        "redis://127.0.0.1:1/0?db=0&password=s3cret&ssl_check_hostname=false",
        "redis://user:s3cret@127.0.0.1:1/0?password=s3cret",
        "unix:///run/redis.sock?password=s3cret",
    ],
)
def test_passwords_in_the_query_are_masked_too(url: str) -> None:
    bus = Bus(url)  # never started: masking is done when the bus is made
    assert "s3cret" not in bus.url
    assert "s3cret" not in repr(bus)
    assert "***" in bus.url


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("unix://", "without a path"),
        ("unix://run/redis.sock", "which names the host 'run'"),
        ("unix://localhost/run/redis.sock", "which names the host 'localhost'"),
        ("unix+stream://redis.sock", "which names the host 'redis.sock'"),
    ],
)
def test_a_unix_url_without_an_absolute_path_is_refused(url: str, found: str) -> None:
    scheme = url.partition(":")[0]
    with pytest.raises(BusConfigurationError) as raised:
        Bus(url)
    message = str(raised.value)
    assert f"absolute path of the Redis socket in a {scheme}:// URL" in message
    assert f"'{scheme}:///run/redis/redis.sock'" in message  # the fix
    assert f"got {url!r}, {found}" in message


def test_an_unknown_scheme_lists_the_redis_forms() -> None:
    with pytest.raises(BusConfigurationError, match=r"'unix:///path/to/redis.sock'.*'\+stream'"):
        Bus("redis+unix:///run/redis.sock")


# ---- TLS -----------------------------------------------------------------------


@needs_redis_py
@pytest.mark.parametrize("scheme", ["rediss", "rediss+stream"])
def test_tls_with_the_ca_named_in_the_url(
    tls_redis: RedisServer, tls: TlsFiles, nodes: Callable[..., Node], scheme: str
) -> None:
    """``rediss://host:port/0?ssl_ca_certs=ca.pem`` (redis-py's URL option); no plaintext port to fall to."""
    url = tls_redis.url.replace("rediss", scheme, 1) + f"?ssl_ca_certs={tls.ca}"
    a, b = nodes(url), nodes(url)
    _round_trip(a, b)
    assert str(tls.ca) in a.bus.url  # nothing secret in the URL: shown as given


@needs_redis_py
@pytest.mark.parametrize("scheme", ["rediss", "rediss+stream"])
@pytest.mark.parametrize("trusting", ["another CA", "the system's CAs"])
def test_an_untrusted_certificate_is_refused_with_the_fix(
    tls_redis: RedisServer, nodes: Callable[..., Node], tmp_path: Path, scheme: str, trusting: str
) -> None:
    """Neither the listener nor the publisher connects (nor tries without TLS); the error gives the fix."""
    tls = tls_redis.tls
    assert tls is not None
    url = tls_redis.url.replace("rediss", scheme, 1)
    if trusting == "another CA":
        url += f"?ssl_ca_certs={make_tls_files(tmp_path / 'rogue', 'rogue').ca}"
    trusted = nodes(tls_redis.url.replace("rediss", scheme, 1) + f"?ssl_ca_certs={tls.ca}")
    refused = nodes(url, start=False)
    assert not refused.bus.start(wait=0.5)
    refused.signal.send(None, post_id=1)  # queued: the publisher cannot connect either
    refused.signal.send(None, post_id=2)
    until(lambda: not refused.bus.status.publishing, timeout=10, what="the publisher's refusal")
    trusted.signal.send(None, post_id=3)  # the marker: arrives after anything the refused bus got through
    assert trusted.bus.flush()
    status = refused.bus.status
    assert status.state != "connected"
    assert status.gaps == 0
    assert refused.gaps.calls == []
    assert refused.inbox.values("post_id") == [1, 2]  # its own local sends only: never subscribed
    assert status.published == 0
    assert status.last_error is not None
    server = f"127.0.0.1:{tls_redis.port}"
    assert f"TLS certificate of the Redis server {server} is not trusted" in status.last_error
    assert "CERTIFICATE_VERIFY_FAILED" in status.last_error  # the cause, as the ssl module says it
    assert f"'rediss://{server}/0?ssl_ca_certs=/path/to/ca.pem'" in status.last_error
    assert trusted.inbox.values("post_id") == [3]  # nothing of the refused bus arrived
    refused.bus.stop(timeout=0.1)  # not the default 5 s spent trying to publish its two messages


@needs_redis_py
def test_a_certificate_for_another_host_is_refused_with_the_fix(
    nodes: Callable[..., Node], tmp_path: Path
) -> None:
    """Signed by the trusted CA, but for another name than the URL's host: refused, and said so."""
    tls = make_tls_files(tmp_path, "elsewhere", hosts="DNS:redis.example.test")
    server = _started(lambda: RedisServer(tls=tls))
    try:
        refused = nodes(f"{server.url}?ssl_ca_certs={tls.ca}", start=False)
        assert not refused.bus.start(wait=0.5)
        until(lambda: refused.bus.status.last_error is not None, timeout=10, what="the refusal")
        error = str(refused.bus.status.last_error)
        assert f"the Redis server 127.0.0.1:{server.port} is not valid for '127.0.0.1'" in error
        assert "connect by a name the certificate holds" in error
        assert "IP address mismatch" in error  # the cause, as the ssl module says it
        assert refused.bus.status.gaps == 0
        refused.bus.stop(timeout=0.1)
    finally:
        server.close()


@needs_redis_py
@pytest.mark.parametrize("option", ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile"])
def test_a_missing_tls_file_is_refused_when_the_bus_is_made(tmp_path: Path, option: str) -> None:
    """Else every attempt would fail with redis-py's 'Error 2 connecting to host:port. No such file'."""
    missing = tmp_path / "ca.pem"
    with pytest.raises(BusConfigurationError) as raised:
        Bus(f"rediss://127.0.0.1:6380/0?{option}={missing}")
    message = str(raised.value)
    assert f"cannot find {option}={str(missing)!r}" in message
    assert "give the path of an existing PEM file" in message
