"""The blog demo (examples/blog_demo.py) end to end: its scenario's results, checked.

It runs as ``make demo`` runs it, in a subprocess: a real uvicorn server, a
real worker, SQLite, HTTP. The results come back as JSON (``--json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_demo(**env: str) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, "blog_demo.py", "--json"],
        cwd=EXAMPLES,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    stats: dict[str, Any] = json.loads(process.stdout)
    return stats


def test_the_scenario_keeps_every_counter_and_runs_every_job() -> None:
    stats = _run_demo()
    post, draft = str(stats["ids"]["post"]), str(stats["ids"]["draft"])

    # Model signals: profile counters follow creates and deletes; post counters its comments and likes.
    assert stats["profiles"] == {"alice": 1, "bob": 0, "carol": 0}
    assert draft not in stats["posts"]
    assert stats["posts"][post]["comments"] == 2
    assert stats["posts"][post]["likes"] == 2
    assert (
        stats["posts"][post]["views"] >= 3
    )  # post_viewed: each read counted (the scenario reads until fresh)
    assert stats["pages"] == [
        {
            "id": int(post),
            "title": "Hello, signals",
            "author": "alice",
            "body": "the final words",
            "comments": 2,
            "likes": 2,
        }
    ]

    # Background receivers: each notification once, after COMMIT; the failing one dead after 3 attempts.
    assert sorted(stats["notifications"]) == [
        "to alice: Welcome, alice!",
        "to alice: bob commented on 'Hello, signals'",
        "to alice: bob liked 'Hello, signals'",
        "to alice: carol commented on 'Hello, signals'",
        "to alice: carol liked 'Hello, signals'",
        "to bob: Welcome, bob!",
        "to bob: alice published 'Hello, signals'",
        "to carol: Welcome, carol!",
        "to carol: alice published 'Hello, signals'",
    ]
    assert stats["jobs"] == {"queued": 0, "running": 0, "failed": 1}
    [letter] = stats["dead_letters"]
    assert letter.startswith("blog.receivers.notifications:ping_partner_feed: ")
    assert "intentional demo failure" in letter

    # The search index: the published post is found; five saves in a burst were indexed by fewer jobs.
    assert stats["search"] == [int(post)]
    assert 1 <= stats["index"][post] < 5
    assert draft not in stats["index"]

    # The page cache: filled, then evicted by post_changed after the comments' and likes' COMMITs.
    assert stats["cache"]["evictions"] >= 1
    assert stats["cache"]["hits"] >= 2

    # Request signals timed every request, by route.
    assert stats["requests"]["POST /users"]["count"] == 3
    assert stats["requests"]["DELETE /posts/{post_id}"]["count"] == 1
    assert stats["seconds"] < 60


def test_with_redis_a_second_app_process_evicts_its_copy_too() -> None:
    from tests._redis import RedisServer, RedisUnavailableError

    try:
        server = RedisServer()
    except RedisUnavailableError:
        if os.environ.get("CI"):
            raise  # .ci/run installs redis-server
        pytest.skip("redis-server is not installed")
    server.start()
    try:
        stats = _run_demo(REDIS_URL=server.url)
    finally:
        server.close()
    [other] = stats["readers"]
    assert other["process"] != stats["process"]
    # Both processes cached the page, then served the fresh one: the other one because the
    # writer's post_changed reached it over Redis, after each COMMIT.
    fresh = {"comments": 2, "likes": 2}
    assert [{k: page[k] for k in fresh} for page in stats["pages"]] == [fresh, fresh]
    assert other["cache"]["remote_evictions"] >= 1
    assert other["cache"]["evictions"] == other["cache"]["remote_evictions"]
    assert stats["cache"]["remote_evictions"] == 0  # no echo: the writer is not told its own sends
    assert other["bus"]["state"] == "connected"
    assert other["bus"]["received"] == stats["bus"]["published"] > 0
