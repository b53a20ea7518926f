"""Async receivers: asend() from async code, and send() from sync code.

Sync receivers run in a worker thread (the event loop never blocks); async
receivers run concurrently. Results list sync receivers first. Last,
per-request receivers with connected_to(local=True).
"""

import asyncio
import threading
import time

from tocsin import Signal

user_signed_up = Signal(name="user_signed_up")


@user_signed_up.connect
def write_audit_log(sender, user, **kwargs):
    return f"audit row for {user} (thread {threading.current_thread().name})"


@user_signed_up.connect
async def send_welcome_mail(sender, user, **kwargs):
    await asyncio.sleep(0.1)
    return f"welcome mail to {user}"


@user_signed_up.connect
async def warm_recommendations(sender, user, **kwargs):
    await asyncio.sleep(0.1)
    return f"recommendations for {user}"


async def main():
    start = time.perf_counter()
    results = await user_signed_up.asend(sender=None, user="ada")
    elapsed = time.perf_counter() - start
    for handler, response in results:
        print(f"  {handler.__name__:>20} -> {response}")
    print(f"  two 0.1 s async receivers took {elapsed:.2f} s together (they ran concurrently)")


print("await signal.asend(...):")
asyncio.run(main())

print("signal.send(...) from plain sync code runs the async receivers too:")
for handler, response in user_signed_up.send(sender=None, user="grace"):
    print(f"  {handler.__name__:>20} -> {response}")


# Per-request receivers: connected_to(local=True) hears only the sends made by
# its own task (and the tasks it starts), not the requests running beside it.
item_added = Signal(name="item_added")


async def handle_request(name, items):
    added = []

    def collect(sender, item, **kwargs):
        added.append(item)

    with item_added.connected_to(collect, local=True):
        for item in items:
            item_added.send(sender=None, item=item)
            await asyncio.sleep(0)  # let the other requests run in between
    return f"{name} added {added}"


async def serve():
    return await asyncio.gather(
        handle_request("request 1", ["tea", "cup"]), handle_request("request 2", ["pot"])
    )


print("connected_to(local=True) in two concurrent requests:")
for line in asyncio.run(serve()):
    print(f"  {line}")
