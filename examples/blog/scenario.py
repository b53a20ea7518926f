"""A realistic session on the blog, over HTTP, and a readable summary of what the signals did."""

from __future__ import annotations

import time

import httpx


def _ok(response):
    if response.is_error:
        msg = f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text}"
        raise RuntimeError(msg)
    return response.json() if response.content else None


def run(urls, *, timeout=30.0):
    """Drive the app(s) at *urls*: writes go to the first, reads to every one; returns the stats."""
    main, *others = [httpx.Client(base_url=url, timeout=10) for url in urls]
    readers = [main, *others]
    try:
        alice, bob, carol = (
            _ok(main.post("/users", json={"name": n}))["id"] for n in ("alice", "bob", "carol")
        )
        post = _ok(
            main.post("/posts", json={"author_id": alice, "title": "Hello, signals", "body": "draft"})
        )["id"]
        for body in ("first words", "better words", "the final words"):  # a burst of edits: indexed once
            _ok(main.patch(f"/posts/{post}", json={"body": body}))
        _ok(main.post(f"/posts/{post}/publish"))
        draft = _ok(main.post("/posts", json={"author_id": bob, "title": "A draft to delete"}))["id"]

        for client in readers:  # every process caches the page
            for _ in range(3):
                _ok(client.get(f"/posts/{post}"))
        _ok(main.post(f"/posts/{post}/comments", json={"author_id": bob, "text": "Nice!"}))
        _ok(main.post(f"/posts/{post}/comments", json={"author_id": carol, "text": "+1"}))
        _ok(main.post(f"/posts/{post}/likes", json={"user_id": bob}))
        _ok(main.post(f"/posts/{post}/likes", json={"user_id": carol}))
        pages = [_wait_for(client, post, comments=2, likes=2, timeout=timeout) for client in readers]
        main.delete(f"/posts/{draft}").raise_for_status()

        deadline = time.monotonic() + timeout
        while True:  # the background receivers run after COMMIT, in the worker
            stats = _ok(main.get("/stats"))
            settled = stats["jobs"]["queued"] == stats["jobs"]["running"] == 0 and stats["dead_letters"]
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stats["search"] = _ok(main.get("/search", params={"q": "final"}))["post_ids"]
        stats["pages"] = pages
        stats["readers"] = [_ok(client.get("/stats")) for client in others]
        stats["ids"] = {"post": post, "draft": draft, "users": [alice, bob, carol]}
        return stats
    finally:
        for client in readers:
            client.close()


def _wait_for(client, post, *, comments, likes, timeout):
    # Another process evicts its copy when the bus delivers post_changed: a moment after COMMIT.
    deadline = time.monotonic() + timeout
    while True:
        page = _ok(client.get(f"/posts/{post}"))
        if (page["comments"], page["likes"]) == (comments, likes) or time.monotonic() > deadline:
            return page
        time.sleep(0.01)


def summary(stats):
    """The stats as lines a person reads."""
    post = str(stats["ids"]["post"])
    lines = ["", "== What the signals did"]
    lines.append(f"profiles (post_count, kept by post_save/post_delete): {stats['profiles']}")
    counts = stats["posts"][post]
    lines.append(
        f"post {post}: {counts['comments']} comments, {counts['likes']} likes, {counts['views']} views "
        "(counters kept by model signals and post_viewed)"
    )
    lines.append(
        f"draft {stats['ids']['draft']} deleted: still listed? {str(stats['ids']['draft']) in stats['posts']}"
    )
    lines.append(f"notifications sent by background jobs ({len(stats['notifications'])}):")
    lines.extend(f"  - {message}" for message in stats["notifications"])
    lines.append(
        f"search index: 'final' finds posts {stats['search']}; post {post} written "
        f"{stats['index'].get(post, 0)} time(s) for 5 saves (key= and delay= fold a burst into one job)"
    )
    lines.append(
        "dead letters (the intentional failure: 3 attempts, then kept for `tocsin jobs failed`/`retry`):"
    )
    lines.extend(f"  - {letter}" for letter in stats["dead_letters"])
    for name, view in [("this process", stats), *(("other process", r) for r in stats["readers"])]:
        cache = view["cache"]
        bus = view["bus"]
        lines.append(
            f"page cache, {name} (pid {view['process']}): {cache['hits']} hits, {cache['misses']} misses, "
            f"{cache['evictions']} evictions ({cache['remote_evictions']} by other processes' sends), "
            f"bus {bus['state']} ({bus['published']} published, {bus['received']} received)"
        )
    lines.append("request timing (request_started -> request_finished):")
    lines.extend(
        f"  {route:<32} {t['count']:>3} requests, median {t['median_ms']} ms"
        for route, t in stats["requests"].items()
    )
    return "\n".join(lines)
