"""Background receivers: send() writes a job; a worker thread runs it, with retries.

`make demo` runs this with an embedded job store (a SQLite file, standard
library only). See docs/background.md for workers, the outbox and guarantees.
"""

import logging
import sys
import tempfile
import threading
from pathlib import Path

from tocsin import Signal
from tocsin.background import Jobs

logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="  log: %(message)s")

order_placed = Signal(name="order_placed", doc="Sent when an order is stored. Sends order_id.")

store = Path(tempfile.mkdtemp()) / "jobs.db"
jobs = Jobs(f"sqlite:///{store}")
done = threading.Event()
attempts: list[int] = []


@order_placed.connect(via=jobs.later(retries=2, backoff=0.01))
def send_receipt(sender, order_id, job, **kwargs):
    attempts.append(job.attempt)
    if job.attempt == 1:
        raise ConnectionError("mail server busy")  # retried with backoff
    print(f"receipt for order {order_id} sent (job {job.id}, attempt {job.attempt})")
    done.set()


[(receiver, deferred)] = order_placed.send(sender="shop", order_id=42)
print(f"send() returned at once: {receiver.__name__} -> job {deferred.handle}")
print("pending jobs:", [j.receiver.split(":")[1] for j in jobs.list()])

with jobs.start_worker():
    assert done.wait(10), "the worker did not run the job"
print("attempts:", attempts)
