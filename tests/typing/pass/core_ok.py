"""Uses of the untyped (Django-style) core API that type checkers must accept."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tocsin
from tocsin import DeferredCall, Signal, receiver

sig = Signal(name="core", doc="Sent with value=.")
pending: list[DeferredCall] = []
pool = ThreadPoolExecutor(max_workers=1)


def handler(sender: object, **kwargs: Any) -> int:
    return 1


@receiver([sig], sender=int, priority=3, dispatch_uid="h")
def decorated(sender: object, **kwargs: Any) -> None:
    pass


@sig.connect
def bare(sender: object, **kwargs: Any) -> None:
    pass


same: Any = sig.connect(handler, weak=False)
sig.connect(handler, via=pending.append)
sig.connect(handler, via=pool.submit)
responses: list[tuple[Any, Any]] = sig.send(sender=None, value=1)
robust: list[tuple[Any, Any]] = sig.send_robust(None, value=1)
removed: bool = sig.disconnect(handler)
listening: bool = sig.has_listeners()
connections: list[tocsin.Connection] = sig.connections()
with sig.connected_to(handler, sender="shop", priority=1) as scoped:
    scoped_name: str = scoped.__name__
with sig.connected_to(handler, local=True) as local_handler:
    local_name: str = local_handler.__name__


def report(exc: Exception, context: tocsin.ErrorContext) -> None:
    del exc, context


class Reporter:
    def failed(self, exc: BaseException, context: tocsin.ErrorContext) -> bool:
        return context.robust


sig.connect(handler, on_error=report)
sig.connect(handler, sender=int, on_error=Reporter().failed)
sig.connect(handler, on_error=lambda exc, context: print(exc, context.method))


@receiver(sig, on_error=report)
def guarded(sender: object, **kwargs: Any) -> None:
    pass


with sig.connected_to(handler, on_error=report):
    pass
discovered: list[str] = tocsin.autodiscover("tocsin", modules=["signals"], entry_points=False)


async def main() -> None:
    results: list[tuple[Any, Any]] = await sig.asend(None, value=1)
    del results


asyncio.run(main())
