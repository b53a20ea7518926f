"""A checkout run: places orders and a declined payment (``python -m shop.checkout``)."""

import sys

from . import audit, mail, stock
from .models import Order, Payment
from .signals import order_placed, payment_failed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 2
    stock.STOCK.update(tea=5, cup=12)  # a fresh day in the shop
    mail.OUTBOX.clear()
    mail.BOUNCED.clear()
    audit.LOG.clear()
    for number in range(1, count + 1):
        order_placed.send(sender=Order, order=Order(number, "tea", 2, f"buyer{number}@example.com"))
    bad = Order(99, "cup", 1, "nobody")
    try:
        order_placed.send(sender=Order, order=bad)
    except ValueError as exc:
        print(f"order 99 rejected: {exc}")
    payment_failed.send(sender=Payment, payment=Payment(bad, 4.5), reason="card expired")
    for call in mail.LATER:  # the transaction commits
        call()
    mail.LATER.clear()
    print(f"{len(mail.OUTBOX)} mails, {len(audit.LOG)} audit entries")


if __name__ == "__main__":
    main()
