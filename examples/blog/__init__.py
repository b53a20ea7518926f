"""The signals blog: posts, comments, likes and profiles, with tocsin for everything signals do.

Run it with ``python examples/blog_demo.py`` (``make demo`` does). The parts:

- ``models``: SQLAlchemy models on SQLite, with Django's model signals (``tocsin.sqlalchemy``);
- ``signals``: the blog's own signals;
- ``receivers``: counters, notifications, the search index, cache invalidation, request timing;
- ``app``: the FastAPI app; ``scenario``: drives it over HTTP and summarises what happened.

Configuration comes from the environment: ``BLOG_DATABASE`` (a SQLite file),
``BLOG_BUS`` (the broadcast bus URL: ``memory://`` by default, ``redis://...``).
"""
