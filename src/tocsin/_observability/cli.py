"""The ``tocsin`` commands that inspect, graph and trace the signals of a program.

Plain argparse. ``tocsin._cli.main`` (the console script) builds the parser:
:func:`add_commands` adds these subcommands; a handler returns the exit
status or raises :class:`CommandError`, reported as one ``tocsin: ...`` line
on stderr with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import TextIO

from . import graph as _graph
from . import observe as _observe
from . import trace as _trace

__all__ = ["CommandError", "add_commands", "import_modules"]

_PYTHON_NAMES = ("python", "python3", "py")


class CommandError(Exception):
    """An error to report as one line, with exit status 1."""


def _module_name(spec: str) -> str:
    """Accept ``pkg.mod`` and also ``pkg/mod.py`` (a path under the cwd)."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = spec.removesuffix(".py").replace(os.sep, "/").strip("/")
        path = path.removesuffix("/__init__")
        return path.replace("/", ".")
    return spec


def _location(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({os.path.relpath(exc.filename)}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    try:
        path = os.path.relpath(frame.filename)
    except ValueError:
        path = frame.filename
    return f" ({path}:{frame.lineno})"


def _import(spec: str) -> str:
    name = _module_name(spec)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            msg = f"no module named {name!r} (searched sys.path from {Path.cwd()})"
            raise CommandError(msg) from None
        msg = f"importing {name!r} failed: {type(exc).__name__}: {exc}{_location(exc)}"
        raise CommandError(msg) from None
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is reported
        msg = f"importing {name!r} failed: {type(exc).__name__}: {exc}{_location(exc)}"
        raise CommandError(msg) from None
    return name


def import_modules(specs: list[str]) -> list[str]:
    """Import each module named in *specs* (dotted names or paths); return their names.

    Like ``python -m``, modules in the current directory are importable.

    Raises:
        CommandError: a module is missing or failed to import (what, and where).
    """
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return [_import(spec) for spec in specs]


def _collect(specs: list[str]) -> list[_graph.SignalInfo]:
    names = import_modules(specs)
    infos = _graph.collect(names)
    if not infos:
        msg = (
            f"no signals found in {', '.join(names)} "
            "(no signal is defined or imported there, or connected to a receiver defined there)"
        )
        raise CommandError(msg)
    return infos


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    infos = _collect(args.modules)
    out.write((_graph.render_json(infos) if args.json else _graph.render_text(infos)) + "\n")
    return 0


def _cmd_graph(args: argparse.Namespace, out: TextIO) -> int:
    infos = _collect(args.modules)
    render = _graph.render_dot if args.format == "dot" else _graph.render_mermaid
    out.write(render(infos) + "\n")
    return 0


def _split_command(command: list[str], module: str | None) -> tuple[str | None, str | None, list[str]]:
    """Return ``(script, module, args)`` for ``[python] script.py args`` or ``[python] -m mod args``."""
    if command and command[0] == "--":
        command = command[1:]
    if module is not None:
        return None, module, command
    if command and Path(command[0]).name.split(".exe")[0].rstrip("0123456789.") in _PYTHON_NAMES:
        command = command[1:]
    if len(command) >= 2 and command[0] == "-m":  # noqa: PLR2004 - "-m" and the module
        return None, command[1], command[2:]
    if not command or command[0].startswith("-"):
        msg = "trace needs a program: tocsin trace -- python script.py [args] (or -m module [args])"
        raise CommandError(msg)
    return command[0], None, command[1:]


def _run(script: str | None, module: str | None, args: list[str]) -> int:
    """Run the program in this process as ``__main__``; return its exit status."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    try:
        if module is not None:
            sys.argv = [module, *args]
            sys.path.insert(0, str(Path.cwd()))
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert script is not None
            sys.argv = [script, *args]
            sys.path.insert(0, str(Path(script).resolve().parent))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - the program's own failure, shown as Python would
        traceback.print_exc()
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def _cmd_trace(args: argparse.Namespace, out: TextIO) -> int:
    script, module, program_args = _split_command(args.command, args.module)
    if script is not None and not Path(script).is_file():
        msg = f"can't open file {script!r}: no such file"
        raise CommandError(msg)
    if module is not None:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            msg = f"no module named {module!r} (searched sys.path from {Path.cwd()})"
            raise CommandError(msg)
    tracer = _trace.Trace(level=None)
    with _observe.observe(tracer):
        status = _run(script, module, program_args)
    what = f"-m {module}" if module is not None else script
    lines = [
        f"tocsin trace: {what} exited with status {status}",
        *_trace.format_timeline(tracer.sends, tracer.origin),
    ]
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        out.flush()
        sys.stderr.write(text)
    return status


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``inspect``, ``graph`` and ``trace`` to the ``tocsin`` command's subparsers."""
    inspect = sub.add_parser(
        "inspect",
        help="list the signals of some modules and their receivers",
        description="Import MODULEs and print each signal with its receivers: qualified name, file:line, "
        "sender filter, weak/strong, priority, dispatch_uid, delivery policy and on_error handler.",
    )
    inspect.add_argument("modules", nargs="+", metavar="MODULE", help="dotted module name (or path to a .py)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=_cmd_inspect)

    graph = sub.add_parser(
        "graph",
        help="draw senders -> signals -> receivers",
        description="Import MODULEs and print a diagram of senders -> signals -> receivers.",
    )
    graph.add_argument("modules", nargs="+", metavar="MODULE", help="dotted module name (or path to a .py)")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="default: mermaid")
    graph.set_defaults(handler=_cmd_graph)

    trace = sub.add_parser(
        "trace",
        help="run a program and print a timeline of its sends",
        description="Run a Python program in this process with tracing on, then print a timeline of its "
        "sends with per-receiver durations and failures (on stderr, or to --output). "
        "Exits with the program's status.",
        usage="tocsin trace [-h] [-o FILE] -- python script.py [args ...] | -m module [args ...]",
    )
    trace.add_argument("-o", "--output", metavar="FILE", help="write the timeline to FILE instead of stderr")
    trace.add_argument("-m", dest="module", metavar="MODULE", help="run library module MODULE as a script")
    trace.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    trace.set_defaults(handler=_cmd_trace)
