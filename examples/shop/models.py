"""The shop's domain objects (senders of its signals)."""

import dataclasses


@dataclasses.dataclass
class Order:
    number: int
    sku: str
    quantity: int
    email: str


@dataclasses.dataclass
class Payment:
    order: Order
    amount: float
