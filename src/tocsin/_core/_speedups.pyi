# Types of the optional C extension (see speedups.py and _speedups.c).

from collections.abc import Callable, Hashable
from types import ModuleType
from typing import Any

class FastSend:
    # Signal.send, send_robust, connect or disconnect in C; the pure-Python method is __wrapped__.
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...

def make_method(method: Callable[..., Any], kind: int, /) -> FastSend: ...
def setup(
    signal_class: type,
    empty_routes: dict[Hashable, Any],
    default_key: str,
    missing: object,
    stale_table: dict[Hashable, Any],
    sender_ref: type,
    attach: Callable[..., None],
    detach: Callable[..., None],
    hooks: ModuleType,
    getweakrefcount: Callable[[object], int],
    find_anchor: Callable[..., Any],
    keywords_only: object,
    no_priority: int,
    lock_type: type,
    /,
) -> None: ...
