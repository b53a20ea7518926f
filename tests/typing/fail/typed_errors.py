"""Uses of typed signals that type checkers must reject.

Each line expected to fail ends with a comment "E:" and part of the expected mypy message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import tocsin


class Order:
    pass


@tocsin.typed_signal
def order_placed(*, order: Order, total: Decimal) -> None:
    """Sent after an order is placed."""


order_placed.send(Order, order=Order())  # E: Missing named argument "total"
order_placed.send(Order, ordr=Order(), total=Decimal(5))  # E: Unexpected keyword argument "ordr"
order_placed.send(Order, order=Order(), total=5.0)  # E: incompatible type "float"; expected "Decimal"
order_placed.send_robust(Order, order="order", total=Decimal(5))  # E: Argument "order" to "send_robust"


@order_placed.connect  # E: Argument 1 to "connect" of "TypedSignal" has incompatible type
def wrong_type(sender: object, *, order: int, **kwargs: Any) -> None:
    pass


@order_placed.connect  # E: Argument 1 to "connect" of "TypedSignal" has incompatible type
def misspelled(sender: object, *, ordr: Order, **kwargs: Any) -> None:
    pass


def no_sender(*, order: Order, total: Decimal) -> None:
    pass


order_placed.connect(no_sender)  # E: Argument 1 to "connect" of "TypedSignal" has incompatible type


# Not decorated: a function decorated by a failed connect() takes connect()'s return type.
def wrong_order_type(sender: object, *, order: int, **kwargs: Any) -> None:
    pass


def misspelled_order(sender: object, *, ordr: Order, **kwargs: Any) -> None:
    pass


with order_placed.connected_to(wrong_order_type):  # E: Argument 1 to "connected_to" of "TypedSignal"
    pass
with order_placed.connected_to(misspelled_order, sender=Order, local=True):  # E: Argument 1 to "connected_to"
    pass
with order_placed.connected_to(no_sender):  # E: Argument 1 to "connected_to" of "TypedSignal"
    pass
