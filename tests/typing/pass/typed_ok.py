"""Uses of typed signals that type checkers must accept."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import tocsin


class Order:
    pass


@tocsin.typed_signal
def order_placed(*, order: Order, total: Decimal, note: str = "") -> None:
    """Sent after an order is placed."""


order_placed.send(Order, order=Order(), total=Decimal(5))
order_placed.send(sender=Order, order=Order(), total=Decimal(5), note="gift")
order_placed.send_robust(None, order=Order(), total=Decimal(1))


@order_placed.connect
def email(sender: object, *, order: Order, total: Decimal, **kwargs: Any) -> None:
    pass


@order_placed.connect(sender=Order, priority=5)
def audit(sender: object, **kwargs: Any) -> None:
    pass


def by_hand(sender: object, *, order: Order, **kwargs: object) -> str:
    return "ok"


order_placed.connect(by_hand, weak=False)
order_placed.disconnect(by_hand)


async def notify_async(sender: object, *, order: Order, **kwargs: Any) -> None:
    await order_placed.asend(Order, order=order, total=Decimal(2))


with order_placed.connected_to(email):
    order_placed.send(Order, order=Order(), total=Decimal(3))
with order_placed.connected_to(by_hand, sender=Order, local=True, priority=1) as scoped:
    scoped(Order, order=Order(), total=Decimal(3))


def spec(*, count: int) -> None: ...


counted = tocsin.TypedSignal(spec, validate=True)
counted.send(None, count=3)

# Untyped, Django-style signals keep working unchanged.
post_save = tocsin.Signal()
post_save.send(sender=Order, instance=Order(), created=True)
plain: tocsin.Signal = order_placed
