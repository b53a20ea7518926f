"""An audit log of everything the shop does."""

from .signals import order_placed, payment_failed, stock_low

LOG: list[str] = []


def record(sender, signal, **kwargs):
    LOG.append(f"{signal.name}: {sorted(kwargs)}")


for _signal in (order_placed, payment_failed, stock_low):
    _signal.connect(record, weak=False, priority=-10)
