"""A per-process page cache, invalidated in every process through the bus.

``post_changed`` is shared on the broadcast bus: a change committed by any app
process evicts the page here too. If the bus reports a gap (a reconnect:
messages may have been missed), drop everything: a stale page is worse than a
cache miss.
"""

import threading

from blog.bus import bus
from blog.signals import post_changed
from tocsin import receiver

pages: dict[int, dict] = {}
stats = {"hits": 0, "misses": 0, "evictions": 0, "remote_evictions": 0, "flushes": 0}
lock = threading.Lock()


def get(post_id, load):
    with lock:
        page = pages.get(post_id)
        stats["hits" if page is not None else "misses"] += 1
    if page is None:
        page = load(post_id)
        if page is not None:
            with lock:
                pages[post_id] = page
    return page


@receiver(post_changed)
def evict(sender, post_id, **kwargs):
    with lock:
        if pages.pop(post_id, None) is not None:
            stats["evictions"] += 1
            if kwargs.get("origin") is not None:
                stats["remote_evictions"] += 1


@receiver(bus.gap)
def flush(sender, **kwargs):
    with lock:
        pages.clear()
        stats["flushes"] += 1
