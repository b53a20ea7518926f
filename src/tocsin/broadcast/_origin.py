"""Where a remote send came from, and receivers that want only local or only remote sends.

A bus re-sends another process's send locally with one extra named argument,
``origin=`` (an :class:`Origin`); local sends never carry it. So a receiver
tells them apart with ``kwargs.get("origin")``, or is decorated with
:func:`local_only` / :func:`remote_only`.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

__all__ = ["Origin", "is_remote", "local_only", "remote_only"]

F = TypeVar("F")


class Origin:
    """The ``origin=`` argument of a send re-sent from another process.

    Attributes:
        bus: the bus that received it (its URL, password masked).
        process: the sending bus instance's id (random, one per bus and OS
            process: a forked child gets a new one).
        seq: the message's sequence number at that sender (1, 2, ...).
        name: the name the signal is shared under.

    .. versionadded:: 0.1
    """

    __slots__ = ("bus", "name", "process", "seq")
    #: Duck-typed marker read by ``tocsin.otel`` (which cannot import this layer).
    __tocsin_origin__ = True

    def __init__(self, bus: str, process: str, seq: int, name: str) -> None:
        self.bus = bus
        self.process = process
        self.seq = seq
        self.name = name

    def __str__(self) -> str:
        return f"{self.process}#{self.seq}"

    def __repr__(self) -> str:
        return f"<Origin {self.name} from {self.process}#{self.seq} via {self.bus}>"


def is_remote(kwargs: dict[str, Any]) -> bool:
    """Whether a send's named arguments are those of a remote re-send (they carry an :class:`Origin`)."""
    return type(kwargs.get("origin")) is Origin


def local_only(func: F) -> F:
    """Wrap receiver *func* so that it runs only for sends made in this process.

    Use it under ``@receiver``: ``@receiver(sig) @local_only def f(...)``.
    The wrapper returns None for a remote send without calling *func*.

    .. versionadded:: 0.1
    """
    target: Any = func

    @functools.wraps(target)
    def local_receiver(*args: Any, **kwargs: Any) -> Any:
        if type(kwargs.get("origin")) is Origin:
            return None
        return target(*args, **kwargs)

    wrapped: F = local_receiver  # type: ignore[assignment] # same call signature
    return wrapped


def remote_only(func: F) -> F:
    """Wrap receiver *func* so that it runs only for sends re-sent from another process.

    ``@receiver(sig) @remote_only def f(sender, origin, **kwargs)``. The
    wrapper returns None for a local send without calling *func*.

    .. versionadded:: 0.1
    """
    target: Any = func

    @functools.wraps(target)
    def remote_receiver(*args: Any, **kwargs: Any) -> Any:
        if type(kwargs.get("origin")) is not Origin:
            return None
        return target(*args, **kwargs)

    wrapped: F = remote_receiver  # type: ignore[assignment] # same call signature
    return wrapped
