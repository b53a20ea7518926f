"""redis-py, imported only by the Redis transports, with the install hint when missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ._errors import BusConfigurationError

__all__ = ["client", "explained", "require"]


def require(url: str) -> None:
    """Check that redis-py is installed, when the bus is made rather than in its threads.

    Raises:
        BusConfigurationError: it is not.
    """
    try:
        import redis  # noqa: PLC0415, F401 - the optional extra
    except ImportError:
        scheme = url.partition(":")[0]
        msg = f"Bus('{scheme}://...') requires redis-py: pip install 'tocsin[redis]'"
        raise BusConfigurationError(msg) from None


def client(url: str, *, timeout: float) -> Any:
    """A redis-py client for *url* that never retries on its own (the bus owns reconnection).

    Raises:
        BusConfigurationError: redis-py is not installed.
    """
    try:
        import redis  # noqa: PLC0415 - the optional extra, needed only by a Redis bus
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415
    except ImportError:
        msg = "Bus('redis://...') requires redis-py: pip install 'tocsin[redis]'"
        raise BusConfigurationError(msg) from None
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


@contextmanager
def explained(url: str) -> Iterator[None]:
    """Re-raise a refused TLS certificate as a ``ConnectionError`` saying how to trust it.

    redis-py reports it as ``Error 1 connecting to host:port. [SSL:
    CERTIFICATE_VERIFY_FAILED] ...``, which says neither what was expected
    nor how to fix it. The connection is refused either way: never retried
    without TLS.
    """
    try:
        yield
    except Exception as exc:
        if "CERTIFICATE_VERIFY_FAILED" not in str(exc):
            raise
        parts = urlsplit(url)
        server = f"{parts.hostname}:{parts.port or 6379}"
        # "Hostname mismatch" / "IP address mismatch": a trusted CA signed it, for another host.
        if "mismatch" in str(exc):
            msg = (
                f"the TLS certificate of the Redis server {server} is not valid for {parts.hostname!r}; "
                f"expected one naming the host of the URL: connect by a name the certificate holds (its "
                f"subjectAltName), or have it reissued for {parts.hostname!r}. redis-py: {exc}"
            )
        else:
            msg = (
                f"the TLS certificate of the Redis server {server} is not trusted; expected one signed "
                f"by a CA this process trusts: name the CA's PEM file in the URL, 'rediss://{server}/0"
                f"?ssl_ca_certs=/path/to/ca.pem', or add it to the system's CA store. redis-py: {exc}"
            )
        raise ConnectionError(msg) from exc
