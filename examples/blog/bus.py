"""The broadcast bus: ``post_changed`` reaches every app process.

``memory://`` (the default) keeps it inside this process; with
``BLOG_BUS=redis://...`` several app processes drop their cached copies together.
"""

import os

try:
    from tocsin.broadcast import Bus
except ImportError:  # TODO(lead): dev shim until tocsin.broadcast lands
    from tocsin import Signal

    class Bus:
        def __init__(self, url):
            self.gap = Signal(name="gap")
            self.status = "shim"

        def share(self, signal):
            pass

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            pass


from .signals import post_changed

bus = Bus(os.environ.get("BLOG_BUS", "memory://"))
bus.share(post_changed)
