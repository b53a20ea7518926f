"""Uses of the core API that type checkers must reject.

Each line expected to fail ends with a comment "E:" and part of the expected mypy message.
"""

from __future__ import annotations

from typing import Any

import tocsin

sig = tocsin.Signal()


def handler(sender: object, **kwargs: Any) -> None:
    pass


def one_argument(exc: Exception) -> None:
    pass


def wrong_context(exc: Exception, context: str) -> None:
    pass


sig.connect(handler, on_error=one_argument)  # E: No overload variant of "connect" of "Signal" matches
sig.connect(handler, on_error=wrong_context)  # E: No overload variant of "connect" of "Signal" matches
tocsin.receiver(sig, on_error="log")  # E: Argument "on_error" to "receiver" has incompatible type "str"
