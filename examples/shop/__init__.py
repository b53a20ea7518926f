"""A tiny shop wired with signals, used by the ``tocsin`` CLI docs and tests.

Run it with ``python examples/shop_demo.py``; inspect it with
``cd examples && tocsin inspect shop``.
"""

from . import audit, mail, signals, stock
from .models import Order, Payment

__all__ = ["Order", "Payment", "audit", "mail", "signals", "stock"]
