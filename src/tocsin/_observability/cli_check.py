"""The ``tocsin check`` subcommand: the classic receiver mistakes, for CI.

``tocsin check [--import] [--format text|json] TARGET...`` scans files,
directories and modules with :func:`check.check` (static, nothing runs).
With ``--import`` the targets given as module names are imported too and
the live connections are checked for module copies
(:func:`check.live_module_copies`). Exit status: 0 when clean, 1 when
something was found (or the check could not run: one ``tocsin: ...`` line
on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tocsin.exceptions import InvalidArgumentError

from . import check as _check
from .cli import CommandError, import_modules

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["add_command"]


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    try:
        findings = _check.check(*args.targets)
    except InvalidArgumentError as exc:
        raise CommandError(str(exc).replace("check() ", "tocsin check ")) from None
    except SyntaxError as exc:
        msg = f"cannot parse {exc.filename}:{exc.lineno}: {exc.msg}"
        raise CommandError(msg) from None
    if args.import_modules:
        modules = [t for t in args.targets if not Path(t).exists()]
        import_modules(modules)
        findings = sorted(
            set(findings) | set(_check.live_module_copies()), key=lambda f: (f.path, f.line, f.code)
        )
    if args.format == "json":
        out.write(json.dumps([dataclasses.asdict(f) for f in findings], indent=2) + "\n")
    else:
        out.writelines(f"{finding}\n" for finding in findings)
        count = len(findings)
        out.write(f"{count} finding{'' if count == 1 else 's'}\n" if findings else "no findings\n")
    return 1 if findings else 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the ``tocsin`` command's subparsers."""
    parser = sub.add_parser(
        "check",
        help="find receiver mistakes: decorators above @receiver, @receiver on methods, ...",
        description="Scan Python files, directories and modules (without running them) for the classic "
        "receiver mistakes: a decorator stacked above @receiver, @receiver on a method in a class body, "
        "receivers in modules nothing imports, one module imported under two names. Prints each "
        "finding as file:line with its fix; exits with status 1 when there are findings.",
    )
    parser.add_argument(
        "targets", nargs="+", metavar="TARGET", help="a .py file, a directory or a dotted module name"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.add_argument(
        "--import",
        dest="import_modules",
        action="store_true",
        help="also import the TARGETs given as module names and check their live connections "
        "for receivers connected from two copies of one module",
    )
    parser.set_defaults(handler=_cmd_check)
