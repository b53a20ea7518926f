"""Uses of tocsin.testing that type checkers must reject.

Each line expected to fail ends with a comment "E:" and part of the expected mypy message.
"""

from __future__ import annotations

import tocsin
from tocsin.testing import mute

sig = tocsin.Signal(name="imported")


@mute  # a bare @mute: import_rows becomes a mute object that silences import_rows
def import_rows(rows: int) -> None:
    sig.send(None)


import_rows(3)  # E: Value of type variable "_F" of "__call__" of "mute" cannot be "int"
mute(42)  # E: Argument 1 to "mute" has incompatible type "int"
