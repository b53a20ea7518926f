"""For tests/test_broadcast_processes.py: a started bus, then fork; both processes publish.

``python _broadcast_fork.py URL``: the parent sends ``post_id=1``, the child
(after ``bus.start()`` again) ``post_id=2``; each prints its origin id.
"""

from __future__ import annotations

import os
import sys
import warnings

from tocsin import Signal
from tocsin.broadcast import Bus

post_changed = Signal()


def main() -> None:
    bus = Bus(sys.argv[1])
    bus.share(post_changed, name="post")  # the name test_broadcast.Node shares under
    bus.start(wait=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
        child = os.fork()
    if child == 0:
        started = bus.start(wait=20)  # the parent's threads are not here: starts afresh
        post_changed.send(None, post_id=2)
        print(f"child {bus.origin_id()} {started}", flush=True)
        bus.stop()
        os._exit(0)
    post_changed.send(None, post_id=1)
    print(f"parent {bus.origin_id()}", flush=True)
    bus.stop()
    os.waitpid(child, 0)


if __name__ == "__main__":
    main()
