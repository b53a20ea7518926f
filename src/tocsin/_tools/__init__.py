"""Tools built on the core's extension points.

Muting, meta-signals, namespaces, typed signals and the pytest plugin.
Private; the public names are re-exported by ``tocsin`` and ``tocsin.testing``.
"""
