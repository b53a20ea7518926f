"""Build tocsin with its optional C accelerator (everything else is in pyproject.toml).

The extension ``tocsin._core._speedups`` is compiled when it can be, and
skipped, with a message, when it cannot: no C compiler, missing Python
headers, a free-threaded build (3.13t), or an interpreter other than
CPython. tocsin then runs in pure Python, with the same behaviour (see
``src/tocsin/_core/speedups.py``).

Environment variables read at build time:

* ``TOCSIN_NO_EXTENSIONS`` (non-empty): build no extension: a pure-Python,
  ``py3-none-any`` wheel.
* ``TOCSIN_REQUIRE_EXTENSIONS`` (non-empty): fail if the extension cannot be
  built, rather than falling back (the wheel builders set it, see
  ``[tool.cibuildwheel]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

REQUIRED = bool(os.environ.get("TOCSIN_REQUIRE_EXTENSIONS"))
# What a missing or broken compiler raises (distutils' errors, and OSError for a missing program).
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError, ValueError)


def _skip_reason() -> str | None:
    if os.environ.get("TOCSIN_NO_EXTENSIONS"):
        return "TOCSIN_NO_EXTENSIONS is set"
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} is not CPython"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "a free-threaded CPython"
    return None


def _warn(reason: str) -> None:
    bar = "*" * 75
    print(  # noqa: T201 - a build message
        f"{bar}\ntocsin: the C accelerator was not built ({reason}).\n"
        f"tocsin works the same in pure Python, only slower to send.\n{bar}",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """``build_ext`` that falls back to pure Python when compiling fails."""

    def run(self) -> None:
        """Build the extensions; on a compiler error warn and build none."""
        try:
            super().run()
        except BUILD_ERRORS as exc:
            if REQUIRED:
                raise
            _warn(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext: Extension) -> None:
        """Build *ext*; on a compiler error warn and skip it."""
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            if REQUIRED:
                raise
            _warn(f"{type(exc).__name__}: {exc}")


skip = _skip_reason()
if skip is not None:
    if REQUIRED:
        sys.exit(f"tocsin: TOCSIN_REQUIRE_EXTENSIONS is set, but {skip}")
    _warn(skip)
    ext_modules = []
else:
    ext_modules = [
        Extension(
            "tocsin._core._speedups",
            sources=["src/tocsin/_core/_speedups.c"],
            depends=sorted(
                str(p) for p in Path("src/tocsin/_core").glob("_speedups*.h")
            ),  # its parts (MANIFEST.in)
            optional=not REQUIRED,  # setuptools' own fallback, on top of OptionalBuildExt
        )
    ]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
