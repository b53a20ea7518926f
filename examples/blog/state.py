"""Per-process state: the page cache and the request timings (the receivers keep them current)."""

import threading

pages: dict[int, dict] = {}
cache_stats = {"hits": 0, "misses": 0, "evictions": 0, "remote_evictions": 0, "flushes": 0}
request_durations: dict[str, list[float]] = {}
lock = threading.Lock()


def cached_page(post_id, load):
    """The page of *post_id* from the cache, or ``load(post_id)`` (cached unless ``None``)."""
    with lock:
        page = pages.get(post_id)
        cache_stats["hits" if page is not None else "misses"] += 1
    if page is None:
        page = load(post_id)
        if page is not None:
            with lock:
                pages[post_id] = page
    return page
