# Types of the optional C extension (see speedups.py and _speedups.c).

from collections.abc import Callable, Hashable
from typing import Any

class FastSend:
    # Signal.send or send_robust in C; the pure-Python method is __wrapped__.
    def __call__(self, *args: Any, **kwargs: Any) -> list[tuple[Any, Any]]: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...

def make_send(method: Callable[..., list[tuple[Any, Any]]], robust: bool, /) -> FastSend: ...
def setup(
    signal_class: type, empty_routes: dict[Hashable, Any], default_key: str, missing: object, /
) -> None: ...
