"""The shop's signals."""

import tocsin

order_placed = tocsin.Signal(name="order_placed", doc="An order was placed; sends order=.")
payment_failed = tocsin.Signal(name="payment_failed", doc="A payment was declined; sends payment=, reason=.")
stock_low = tocsin.Signal(name="stock_low", doc="Stock of a SKU fell below its threshold; sends sku=, left=.")
