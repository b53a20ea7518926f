"""tocsin basics: custom signals, @receiver, sender filtering, send_robust.

Run with `make demo` (or `python examples/basics.py` once tocsin is installed).
"""

import logging

from tocsin import Signal, receiver


class _IntentionalFailures(logging.Formatter):
    """The only error logged here is the demo's own failing receiver: label it, skip its traceback."""

    def format(self, record):
        return "  log (an intentional failure of this demo): " + record.getMessage()


_handler = logging.StreamHandler()
_handler.setFormatter(_IntentionalFailures())
logging.basicConfig(level=logging.ERROR, handlers=[_handler])

# 1. A custom signal, documented like Django's.
order_placed = Signal(name="order_placed", doc="Sent after an order is stored; sends order=, total=.")


class Shop:
    """A sender: receivers can listen to one shop class or to every sender."""


class GiftShop(Shop):
    pass


# 2. @receiver connects at import time; receivers take **kwargs.
@receiver(order_placed)
def send_confirmation(sender, order, **kwargs):
    return f"confirmation mail for order {order}"


# 3. Sender filtering: this one only hears GiftShop, and runs first (priority).
@receiver(order_placed, sender=GiftShop, priority=10)
def wrap_gift(sender, order, **kwargs):
    return f"gift wrap for order {order}"


print("send from Shop:")
for handler, response in order_placed.send(sender=Shop, order=1, total=9.5):
    print(f"  {handler.__name__:>18} -> {response}")

print("send from GiftShop (filtered receiver runs first, by priority):")
for handler, response in order_placed.send(sender=GiftShop, order=2, total=20):
    print(f"  {handler.__name__:>18} -> {response}")


# 4. send() propagates a receiver's exception; send_robust() returns and logs it.
@receiver(order_placed)
def flaky_crm_sync(sender, order, **kwargs):
    raise ConnectionError("CRM is down")


try:
    order_placed.send(sender=Shop, order=3, total=1)
except ConnectionError as exc:
    print(f"send() raised: {exc!r}")

print("send_robust() returns exceptions as responses (and logs them on logger 'tocsin'):")
for handler, response in order_placed.send_robust(sender=Shop, order=4, total=1):
    print(f"  {handler.__name__:>18} -> {response!r}")

# 5. Weak by default: a receiver's connection goes when the receiver does.
order_placed.disconnect(flaky_crm_sync)
print(
    "connections:",
    [(c.qualname, c.sender.__name__ if c.sender else None) for c in order_placed.connections()],
)
