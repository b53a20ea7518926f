"""Page cache invalidation in every app process, through the bus.

``post_changed`` is shared on the broadcast bus: a change committed by any app
process evicts the page here too (such a send carries ``origin=``). If the bus
reports a gap (a reconnect: messages may have been missed), drop everything:
a stale page is worse than a cache miss.
"""

from blog import state
from blog.bus import bus
from blog.signals import post_changed
from tocsin import receiver


@receiver(post_changed)
def evict(sender, post_id, origin=None, **kwargs):
    with state.lock:
        if state.pages.pop(post_id, None) is not None:
            state.cache_stats["evictions"] += 1
            if origin is not None:
                state.cache_stats["remote_evictions"] += 1


@receiver(bus.gap)
def flush(sender, **kwargs):
    with state.lock:
        state.pages.clear()
        state.cache_stats["flushes"] += 1
