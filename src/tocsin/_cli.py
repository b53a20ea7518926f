"""The ``tocsin`` command: the composition root of its subcommands.

``inspect``, ``graph`` and ``trace`` come from ``tocsin._observability.cli``,
``check`` from ``tocsin._observability.cli_check``;
``worker``, ``relay`` and ``jobs`` from ``tocsin.background._cli``, imported only when
one of them runs (the core and observability layers never import an
integration; this module sits above both).

Plain argparse; ``main(argv)`` returns the exit status (0 on success, 1 on
an error reported as one ``tocsin: ...`` line on stderr, 2 on bad usage).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._observability import cli as _observability_cli
from ._observability import cli_check as _check_cli

__all__ = ["main"]

_BACKGROUND = ("worker", "relay", "jobs")


def _background_stub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Listed in --help without importing tocsin.background; replaced by the
    # real subparsers when one of them is the command.
    sub.add_parser("worker", help="run background receivers (tocsin.background)", add_help=False)
    sub.add_parser(
        "relay", help="hand committed background jobs to Celery (tocsin.background)", add_help=False
    )
    sub.add_parser("jobs", help="list, retry and purge background jobs (tocsin.background)", add_help=False)


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tocsin",
        description="Inspect, draw, trace and check the signals of a Python program; "
        "run its background receivers.",
    )
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    _observability_cli.add_commands(sub)
    _check_cli.add_command(sub)
    if any(arg in _BACKGROUND for arg in argv[:1]):
        from .background import _cli as _background_cli  # noqa: PLC0415 - only when asked for

        _background_cli.add_commands(sub)
    else:
        _background_stub(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tocsin`` command with *argv* (``sys.argv[1:]`` by default)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = _parser(arguments).parse_args(arguments)
    handler: Any = getattr(args, "handler", None)
    if handler is None:  # a stub: unreachable, the real parser replaces it
        return 2
    try:
        status: int = handler(args, sys.stdout)
    except _observability_cli.CommandError as exc:
        sys.stderr.write(f"tocsin: {exc}\n")
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
