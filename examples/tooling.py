"""Signal tooling in one script: typed signals, capture, mute, pause, meta-signals.

Run: ``python examples/tooling.py`` (exits 0; see docs/testing.md, docs/tools.md, docs/typing.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import tocsin
from tocsin.testing import capture, mute


@dataclass
class Order:
    id: int
    total: Decimal


# A typed signal: mypy checks every send() and every @order_placed.connect receiver.
@tocsin.typed_signal
def order_placed(*, order: Order) -> None:
    """Sent after an order is placed."""


# A named signal from the default namespace, shared by name.
search_index_dirty = tocsin.signal("search-index-dirty", doc="ids: order ids to reindex")

outbox: list[str] = []


@order_placed.connect
def send_receipt(sender: object, *, order: Order, **kwargs: Any) -> str:
    outbox.append(f"receipt #{order.id}")
    return "sent"


@order_placed.connect
def mark_dirty(sender: object, *, order: Order, **kwargs: Any) -> None:
    search_index_dirty.send(sender=Order, ids=[order.id])


@search_index_dirty.connect
def reindex(sender: object, ids: list[int], **kwargs: Any) -> None:
    print(f"  reindex {ids}")


def place(order_id: int) -> None:
    order_placed.send(Order, order=Order(order_id, Decimal("9.99")))


def merge_ids(held: list[tocsin.HeldSend]) -> tocsin.HeldSend:
    return tocsin.HeldSend(Order, {"ids": [i for h in held for i in h.kwargs["ids"]]})


def main() -> None:
    watched: list[str] = []
    tocsin.receiver_connected.connect(
        lambda sender, receiver, **kw: watched.append(f"{sender.name} <- {receiver.__name__}")
    )

    print("capture: record and assert, mock-style")
    with capture(order_placed) as sent:
        place(1)
    sent.assert_sent_once_with(sender=Order, order=Order(1, Decimal("9.99")))
    print(f"  {sent.sent[0].describe()}")

    print("mute: one receiver, nested safely")
    with mute(send_receipt), mute(send_receipt):
        place(2)
    assert outbox == ["receipt #1"]

    print("paused: 3 orders, one reindex")
    with search_index_dirty.paused(reduce=merge_ids):
        for order_id in (3, 4, 5):
            place(order_id)

    def late(sender: object, **kwargs: Any) -> None:
        pass

    order_placed.connect(late)
    print(f"meta-signal: {watched}")
    mine = [f"{s.module}:{s.name}" for s in tocsin.all_signals() if s.module == __name__ and s.name]
    print(f"signals defined here: {mine}")


if __name__ == "__main__":
    main()
