"""redis-py, imported only by the Redis transports, with the install hint when missing."""

from __future__ import annotations

from typing import Any

from ._errors import BusConfigurationError

__all__ = ["client"]


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
