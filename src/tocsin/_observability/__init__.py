"""Observability: ``observe()``, ``trace()`` and the ``tocsin`` command (inspect, graph, trace).

Private; the public names are re-exported by ``tocsin`` and ``tocsin.otel``.
"""
