"""Every receiver of the blog, connected when this package is imported.

``tocsin.autodiscover("blog")`` imports it at startup (the app and the worker
both do), like Django's ``AppConfig.ready()``.
"""

from . import cache, counters, notifications, search, timing

__all__ = ["cache", "counters", "notifications", "search", "timing"]
