"""``tocsin check``: find the classic receiver mistakes in a codebase, statically.

Reads the source (``ast``) of the files and packages given, runs none of it,
and reports each mistake as a :class:`Finding` naming ``file:line`` and the
fix:

``decorator-above-receiver``
    A decorator stacked above ``@receiver(...)`` (or ``@sig.connect``):
    ``@receiver`` connected the function beneath, so the wrapper the
    decorator made (caching, retries, logging) never runs on a send.
    ``@staticmethod`` above it in a class body is fine.
``receiver-on-method``
    ``@receiver`` on a method in a class body: the plain function is
    connected, unbound, when the class is created, and every send fails
    for want of ``self``.
``unimported-receivers``
    Receivers in a module that no other scanned module imports (``import``,
    ``from ... import``, ``importlib.import_module("...")``, at any depth,
    lazy imports included), that no ``autodiscover(...)`` call of the
    scanned code lists (string arguments and a literal ``modules=``, see
    ``tocsin.autodiscover``), that no ``tocsin.receivers`` entry point in a
    ``pyproject.toml`` beside the scanned code names, and that is not a
    script (``if __name__ == "__main__":``, ``__main__.py``, or any module
    outside a package, which is taken for a script run directly): its
    receivers are probably never connected. A package's ``__init__`` counts
    as imported when any module of the package is.
``module-copies``
    One file imported under two names (``app.signals`` and ``signals``),
    so each copy connects its own receivers and every send calls them
    twice. Statically: the scanned code refers to the file under two names,
    resolved from ``sys.path``, the scanned directories, and the importing
    script's own directory (which Python puts first on ``sys.path``). At
    run time (:func:`live_module_copies`): two live connections of one
    source line from two module objects.

Limits: names built at run time (``import_module(f"{app}.signals")``,
``autodiscover(*APPS)``) are invisible to the static checks, so an
``unimported-receivers`` finding may be a false alarm for code imported that
way, or by a tool outside the scanned tree (``uvicorn app:app``). A line
ending with the comment ``# tocsin: ignore`` (or ``# tocsin: ignore[code]``)
silences findings reported on that line.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from tocsin._core import hooks as _hooks
from tocsin.exceptions import InvalidArgumentError

__all__ = ["Finding", "check", "live_module_copies"]

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "build", "dist"})
_DEFAULT_DISCOVERED = ("signals", "receivers")
_IGNORE = re.compile(r"#\s*tocsin:\s*ignore(?:\[([\w\-, ]+)\])?")
_ENTRY_POINTS = re.compile(r'^\[project\.entry-points\."?tocsin\.receivers"?\]\s*$', re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One mistake found by :func:`tocsin.testing.check` (and ``tocsin check``).

    Attributes:
        code: which mistake: ``"decorator-above-receiver"``,
            ``"receiver-on-method"``, ``"unimported-receivers"`` or
            ``"module-copies"``.
        path: the file, relative to the current directory when under it.
        line: the line in *path* (1-based).
        message: what is wrong.
        fix: how to fix it.

    ``str(finding)`` is the line ``tocsin check`` prints:
    ``path:line: [code] message Fix: fix``.

    .. versionadded:: 0.1
    """

    code: str
    path: str
    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.code}] {self.message} Fix: {self.fix}"


@dataclasses.dataclass
class _Module:
    """One scanned file: where it is, its dotted name, and what the checks need of it."""

    path: Path
    name: str
    lines: list[str]
    receivers_line: int | None = None  # first receiver connected at import time
    is_script: bool = False
    # Dotted names it refers to (imports, autodiscover listings) -> first line.
    references: dict[str, int] = dataclasses.field(default_factory=dict)
    # Packages autodiscover() lists -> submodule names (None: not known statically).
    discovers: dict[str, tuple[str, ...] | None] = dataclasses.field(default_factory=dict)
    findings: list[Finding] = dataclasses.field(default_factory=list)


def check(*targets: str | os.PathLike[str]) -> list[Finding]:
    """Find the classic receiver mistakes in *targets*, without running them.

    Each target is a file, a directory (scanned recursively, skipping
    hidden directories, ``__pycache__``, ``build``, ``dist``, virtual
    environments) or the dotted name of an importable module or package
    (located with ``importlib.util.find_spec``, which imports its parent
    packages but not the module itself). The whole set of files is analysed
    together: an import in one file counts for another. See the module
    docstring for the four checks and their limits.

    Returns:
        The findings, sorted by path and line; empty when the code is clean.

    Raises:
        InvalidArgumentError: no target, or a target that is neither a
            file, a directory nor an importable module.
        SyntaxError: a scanned file does not parse.

    .. versionadded:: 0.1
    """
    if not targets:
        msg = "check() needs at least one file, directory or module name to scan; got none."
        raise InvalidArgumentError(msg)
    roots: list[Path] = []
    files: dict[Path, None] = {}
    for target in targets:
        for root, path in _files_of(target):
            files.setdefault(path)
            if root not in roots:
                roots.append(root)
    modules = [_analyse(path) for path in files]
    by_path = {module.path: module for module in modules}
    references = _references(modules, by_path, roots)
    findings = [finding for module in modules for finding in module.findings]
    findings += _unimported(modules, references, roots)
    findings += _copies(by_path, references)
    shown = {_shown(module.path): module for module in modules}
    return sorted({f for f in findings if _kept(f, shown[f.path])}, key=lambda f: (f.path, f.line, f.code))


def live_module_copies() -> list[Finding]:
    """``module-copies`` findings for the live connections of every signal (after imports).

    Two connections whose receiver functions come from one source line
    (same file, line and name) but from two module objects: the file was
    imported under two names.
    """
    first_seen: dict[tuple[str, int, str], object] = {}
    findings = []
    for signal in _hooks.live_signals():
        for connection in signal.connections():
            func = getattr(connection.receiver, "__func__", connection.receiver)
            code = getattr(func, "__code__", None)
            module_globals = getattr(func, "__globals__", None)
            if code is None or module_globals is None:
                continue
            key = (code.co_filename, code.co_firstlineno, code.co_name)
            first = first_seen.setdefault(key, func)
            if first is not func and first.__globals__ is not module_globals:  # type: ignore[attr-defined]
                names = (first.__module__, func.__module__)
                findings.append(
                    Finding(
                        "module-copies",
                        _shown(Path(code.co_filename)),
                        code.co_firstlineno,
                        f"{code.co_name} is connected to {signal!r} from two copies of its module, "
                        f"{names[0]!r} and {names[1]!r}: every send calls it twice.",
                        _COPIES_FIX,
                    )
                )
    return sorted(set(findings), key=lambda f: (f.path, f.line, f.message))


_COPIES_FIX = (
    "import the module under one name only (check sys.path and how the program is started, and "
    "use the package name everywhere), or connect with dispatch_uid= so the second connect is a duplicate."
)


# ---- files ---------------------------------------------------------------------


def _files_of(target: str | os.PathLike[str]) -> Iterator[tuple[Path, Path]]:
    """``(root, file)`` for each Python file of *target*; *root* is where its names start."""
    path = Path(target)
    if not path.exists() and isinstance(target, str) and _looks_like_module(target):
        path = _module_path(target)
    if path.is_file():
        resolved = path.resolve()
        yield _root_of(resolved), resolved
        return
    if not path.is_dir():
        msg = (
            f"check() scans files, directories and importable modules; {str(target)!r} is neither "
            f"a file nor a directory (from {Path.cwd()}) nor a module found on sys.path."
        )
        raise InvalidArgumentError(msg)
    directory = path.resolve()
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(Path(dirpath) / d))
        for filename in sorted(filenames):
            if filename.endswith(".py"):
                file = Path(dirpath) / filename
                yield _root_of(file), file


def _looks_like_module(target: str) -> bool:
    return all(part.isidentifier() for part in target.split("."))


def _module_path(name: str) -> Path:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return Path(name)  # reported as missing by the caller
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin or name)


def _skipped(directory: Path) -> bool:
    name = directory.name
    return (
        name.startswith(".")
        or name in _SKIPPED_DIRS
        or (directory / "pyvenv.cfg").exists()  # a virtual environment
    )


def _root_of(file: Path) -> Path:
    """The directory a file's dotted name starts from: above its outermost package."""
    directory = file.parent
    while (directory / "__init__.py").exists() and directory.parent != directory:
        directory = directory.parent
    return directory


def _name_from(root: Path, file: Path) -> str | None:
    """The dotted name of *file* when *root* is on ``sys.path`` (regular packages only)."""
    try:
        relative = file.relative_to(root)
    except ValueError:
        return None
    parts = list(relative.with_suffix("").parts)
    directory = root
    for part in parts[:-1]:
        directory /= part
        if not part.isidentifier() or not (directory / "__init__.py").exists():
            return None
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def _shown(path: Path) -> str:
    """*path* relative to the current directory when under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _kept(finding: Finding, module: _Module) -> bool:
    """False if the finding's line carries ``# tocsin: ignore`` (for its code)."""
    if not 0 < finding.line <= len(module.lines):
        return True
    match = _IGNORE.search(module.lines[finding.line - 1])
    if match is None:
        return True
    codes = match.group(1)
    return codes is not None and finding.code not in {c.strip() for c in codes.split(",")}


# ---- one file -------------------------------------------------------------------


def _analyse(path: Path) -> _Module:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    name = _name_from(_root_of(path), path) or path.stem
    module = _Module(path=path, name=name, lines=source.splitlines())
    module.is_script = path.name == "__main__.py" or any(_is_main_guard(node) for node in tree.body)
    _Visitor(module, path.name == "__init__.py").visit(tree)
    return module


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def _connects(decorator: ast.expr) -> bool:
    """``@receiver(...)``, ``@x.receiver(...)``, ``@sig.connect`` or ``@sig.connect(...)``."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Name):
        return target.id == "receiver" and isinstance(decorator, ast.Call)
    if isinstance(target, ast.Attribute):
        return target.attr == "connect" or (target.attr == "receiver" and isinstance(decorator, ast.Call))
    return False


def _is_named(decorator: ast.expr, name: str) -> bool:
    return isinstance(decorator, ast.Name) and decorator.id == name


class _Visitor(ast.NodeVisitor):
    """Collects one module's receivers, references and per-definition findings."""

    def __init__(self, module: _Module, is_package: bool) -> None:  # noqa: FBT001 - private
        self.module = module
        self.package = module.name if is_package else module.name.rpartition(".")[0]
        self.scopes: list[str] = []  # "class" or "function", innermost last

    def _finding(self, code: str, line: int, message: str, fix: str) -> None:
        self.module.findings.append(Finding(code, _shown(self.module.path), line, message, fix))

    def _refer(self, name: str, line: int) -> None:
        if name:
            self.module.references.setdefault(name, line)

    def _connected_at_import(self, line: int) -> None:
        if "function" not in self.scopes and self.module.receivers_line is None:
            self.module.receivers_line = line

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        decorators = node.decorator_list
        index = next((i for i, d in enumerate(decorators) if _connects(d)), None)
        if index is not None:
            self._receiver(node, index)
        self.scopes.append("function")
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - ast's naming

    def _receiver(self, node: ast.FunctionDef | ast.AsyncFunctionDef, index: int) -> None:
        decorators = node.decorator_list
        connecting = ast.unparse(decorators[index])
        in_class = bool(self.scopes) and self.scopes[-1] == "class"
        static = any(_is_named(d, "staticmethod") for d in decorators)
        above = [d for d in decorators[:index] if not (in_class and _is_named(d, "staticmethod"))]
        self._connected_at_import(decorators[index].lineno)
        if above:
            wrappers = ", ".join(f"@{ast.unparse(d)}" for d in above)
            self._finding(
                "decorator-above-receiver",
                above[0].lineno,
                f"{wrappers} is stacked above @{connecting} on {node.name}(): @{connecting} connected "
                f"the undecorated function, so what {wrappers} adds never runs on a send.",
                f"put @{connecting} first (outermost), above {wrappers}, so that the decorated "
                "function is what gets connected.",
            )
        if in_class and not static:
            self._finding(
                "receiver-on-method",
                decorators[index].lineno,
                f"@{connecting} on the method {node.name}() in a class body connects the plain "
                "function, unbound, when the class is created: every send calls it without self "
                "and fails.",
                f"remove @{connecting} and connect the bound method of each instance "
                f"(signal.connect(self.{node.name}) in __init__), or move {node.name}() to module "
                "level (or make it a @staticmethod).",
            )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scopes.append("class")
        self.generic_visit(node)
        self.scopes.pop()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._refer(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".") if self.package else []
            parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            base = ".".join([*parts, *([node.module] if node.module else [])])
        self._refer(base, node.lineno)
        for alias in node.names:
            if alias.name != "*":
                self._refer(f"{base}.{alias.name}" if base else alias.name, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name in {"import_module", "__import__"} and strings:
            self._refer(strings[0], node.lineno)
        elif name == "autodiscover":
            self._autodiscover(node, strings)
        elif name == "connect" and isinstance(func, ast.Attribute) and node.args:
            self._connected_at_import(node.lineno)
        self.generic_visit(node)

    def _autodiscover(self, node: ast.Call, packages: list[str]) -> None:
        submodules: tuple[str, ...] | None = _DEFAULT_DISCOVERED
        for keyword in node.keywords:
            if keyword.arg == "modules":
                value = keyword.value
                items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else None
                strings = [
                    i.value for i in items or [] if isinstance(i, ast.Constant) and isinstance(i.value, str)
                ]
                submodules = tuple(strings) if items is not None and len(strings) == len(items) else None
        for package in packages:
            self.module.discovers[package] = submodules
            self._refer(package, node.lineno)
            for submodule in submodules or ():
                self._refer(f"{package}.{submodule}", node.lineno)


# ---- across files ----------------------------------------------------------------

# file -> {dotted name it is referred to by: (the referring module, line)}
_References = dict[Path, dict[str, tuple[_Module, int]]]


def _references(modules: list[_Module], by_path: dict[Path, _Module], roots: list[Path]) -> _References:
    """Resolve every name each module refers to into the scanned file it would import.

    A name is resolved from each scanned root, each ``sys.path`` directory,
    and the referring file's own directory (a script's, first on
    ``sys.path`` when it is run). A module referring to itself is ignored.
    """
    search = list(dict.fromkeys([*roots, *(Path(p).resolve() for p in sys.path if p and Path(p).is_dir())]))
    found: _References = {}
    for importer in modules:
        for name, line in importer.references.items():
            for root in (*search, importer.path.parent):
                file = _file_for(root, name)
                if file is not None and file in by_path and file != importer.path:
                    found.setdefault(file, {}).setdefault(name, (importer, line))
    return found


def _file_for(root: Path, name: str) -> Path | None:
    """The file *name* imports when *root* is on ``sys.path`` (through regular packages)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file() and _name_from(root, candidate) == name:
            return candidate
    return None


def _unimported(modules: list[_Module], references: _References, roots: list[Path]) -> list[Finding]:
    # autodiscover()ed packages whose submodules are not known statically, and entry points.
    wildcard = {package for m in modules for package, subs in m.discovers.items() if subs is None}
    entry_points = _entry_point_modules(roots)
    findings = []
    for module in modules:
        if module.receivers_line is None or module.is_script or module.path in references:
            continue
        name = module.name
        if name in entry_points or any(name.startswith(w + ".") for w in wildcard):
            continue
        if module.path.name == "__init__.py" and any(
            f.is_relative_to(module.path.parent) for f in references
        ):
            continue  # importing any module of a package runs its __init__
        parent, _, leaf = name.rpartition(".")
        if not parent:
            continue  # a top-level module, not in a package: taken for a script run directly
        findings.append(
            Finding(
                "unimported-receivers",
                _shown(module.path),
                module.receivers_line,
                f"{name} connects receivers when imported, but no scanned module imports it and no "
                "autodiscover() call or tocsin.receivers entry point lists it: its receivers are "
                "probably never connected.",
                f"import it at startup: tocsin.autodiscover({parent!r}, modules=({leaf!r},)), or "
                f"'from . import {leaf}' in {parent}/__init__.py, or a tocsin.receivers entry point "
                "(if code outside the scanned files imports it, add '# tocsin: ignore' to this line).",
            )
        )
    return findings


def _entry_point_modules(roots: Iterable[Path]) -> set[str]:
    """Modules named by ``tocsin.receivers`` entry points in pyproject.toml files beside *roots*."""
    names: set[str] = set()
    seen: set[Path] = set()
    for root in roots:
        for directory in (root, *list(root.parents)[:2]):
            pyproject = directory / "pyproject.toml"
            if pyproject in seen or not pyproject.is_file():
                continue
            seen.add(pyproject)
            text = pyproject.read_text(encoding="utf-8")
            for header in _ENTRY_POINTS.finditer(text):
                body = text[header.end() :].split("\n[", 1)[0]
                names.update(m.group(1) for m in re.finditer(r'=\s*"([\w.]+)(?::[\w.]+)?"', body))
    return names


def _copies(by_path: dict[Path, _Module], references: _References) -> list[Finding]:
    """Receiver modules the scanned code refers to under two names."""
    findings = []
    for file, names in references.items():
        module = by_path[file]
        if module.receivers_line is None or len(names) < 2:  # noqa: PLR2004 - two names
            continue
        where = ", ".join(
            f"{name!r} ({_shown(importer.path)}:{line})" for name, (importer, line) in sorted(names.items())
        )
        findings.append(
            Finding(
                "module-copies",
                _shown(file),
                module.receivers_line,
                f"{_shown(file)} is imported under {len(names)} names, {where}: each name runs it "
                "again, connecting its own copy of each receiver, so every send calls them twice.",
                _COPIES_FIX,
            )
        )
    return findings
