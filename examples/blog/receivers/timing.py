"""Request timing from the request signals of ``tocsin.asgi``."""

import time

from blog import state
from tocsin import receiver
from tocsin.asgi import request_finished, request_started

_started: dict[int, float] = {}


@receiver(request_started)
def start_clock(sender, scope, **kwargs):
    _started[id(scope)] = time.perf_counter()  # the scope lives until request_finished


@receiver(request_finished)
def stop_clock(sender, scope, **kwargs):
    started = _started.pop(id(scope), None)
    if started is not None:
        route = scope.get("route")
        name = f"{scope['method']} {route.path if route is not None else scope['path']}"
        with state.lock:
            state.request_durations.setdefault(name, []).append(time.perf_counter() - started)
