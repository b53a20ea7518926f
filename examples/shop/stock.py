"""Stock keeping: reserves stock and warns when it runs low."""

from .models import Order
from .signals import order_placed, stock_low

STOCK = {"tea": 5, "cup": 12}
THRESHOLD = 3


@order_placed.connect(sender=Order, priority=10)
def reserve_stock(sender, order, **kwargs):
    left = STOCK[order.sku] = STOCK[order.sku] - order.quantity
    if left < THRESHOLD:
        stock_low.send(sender="stock", sku=order.sku, left=left)
    return left
