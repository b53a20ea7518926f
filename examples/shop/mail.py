"""Mails to customers and staff."""

from .models import Order, Payment
from .signals import order_placed, payment_failed, stock_low

OUTBOX: list[tuple[str, str]] = []
LATER: list = []
BOUNCED: list[int] = []


def after_commit(call):
    """A delivery policy: keep the call until the transaction commits."""
    LATER.append(call)


def note_bounce(exc, context):
    """An on_error handler: keep the order whose receipt could not be sent, for the staff."""
    BOUNCED.append(context.kwargs["order"].number)


@order_placed.connect(sender=Order, dispatch_uid="order-receipt", on_error=note_bounce)
def send_receipt(sender, order, **kwargs):
    if "@" not in order.email:
        msg = f"bad address {order.email!r}"
        raise ValueError(msg)
    OUTBOX.append((order.email, f"Thanks for order {order.number}"))


@payment_failed.connect(sender=Payment, via=after_commit)
def tell_customer(sender, payment, reason, **kwargs):
    OUTBOX.append((payment.order.email, f"Payment declined: {reason}"))


class Buyers:
    """Warns the buying team; connected as a bound method."""

    def __init__(self):
        self.warnings = []

    def on_stock_low(self, sender, sku, left, **kwargs):
        self.warnings.append((sku, left))


buyers = Buyers()
stock_low.connect(buyers.on_stock_low)
