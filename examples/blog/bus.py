"""The broadcast bus: ``post_changed`` reaches every app process.

``memory://`` (the default) keeps it inside this process; with
``BLOG_BUS=redis://...`` several app processes drop their cached copies together.
"""

import os

from tocsin.broadcast import Bus

from .signals import post_changed

bus = Bus(os.environ.get("BLOG_BUS", "memory://"))
bus.share(post_changed)
