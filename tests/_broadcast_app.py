"""One process holding a cache, for tests/test_broadcast_processes.py.

Run as ``python _broadcast_app.py URL``: commands arrive on stdin, one per
line, and events leave on stdout, one per line, so the test waits on what
each process reports, never on fixed sleeps.

Commands: ``fill ID...`` (cache those ids), ``update ID`` (send
``post_changed`` for it), ``traffic`` / ``quiet`` (start / stop sending one
update every few milliseconds, ids from 100000), ``cache`` (report the cached
ids), ``quit``. Events: ``ready``, ``gap REASON``, ``evicted ID local|remote``,
``filled``, ``cache IDS``, ``bye``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from tocsin import Signal, receiver
from tocsin.broadcast import Bus

post_changed = Signal()
cache: dict[int, str] = {}
_out = threading.Lock()


def report(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@receiver(post_changed)
def evict(sender: Any, post_id: int, **kwargs: Any) -> None:
    cache.pop(post_id, None)
    report(f"evicted {post_id} {'remote' if 'origin' in kwargs else 'local'}")


def _traffic(stop: threading.Event) -> None:
    post_id = 100000
    while not stop.wait(0.005):  # pacing the traffic, not waiting for anything
        post_changed.send(None, post_id=post_id)
        post_id += 1


def main() -> None:
    bus = Bus(sys.argv[1], max_backoff=0.2)
    bus.share(post_changed, name="post_changed")

    def gap(sender: Any, reason: str, **kwargs: Any) -> None:
        report(f"gap {reason}")

    bus.gap.connect(gap, weak=False)
    bus.start(wait=20)
    report("ready")
    quiet = threading.Event()
    for line in sys.stdin:
        command, *args = line.split()
        if command == "fill":
            cache.update({int(arg): "cached" for arg in args})
            report("filled")
        elif command == "update":
            post_changed.send(None, post_id=int(args[0]))
        elif command == "traffic":
            quiet.clear()
            threading.Thread(target=_traffic, args=(quiet,), daemon=True).start()
        elif command == "quiet":
            quiet.set()
        elif command == "cache":
            report("cache " + ",".join(str(k) for k in sorted(cache)))
        elif command == "quit":
            break
    quiet.set()
    bus.stop()
    report("bye")


if __name__ == "__main__":
    main()
