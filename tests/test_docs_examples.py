"""Every example in the docs runs: the ```python blocks of README.md and docs/**/*.md, and ``>>>`` doctests.

Pages are found with a glob, so a new page is tested from the day it is added.
Each block runs in a fresh namespace, on the installed package,
from a temporary directory (files it creates land there) with ``examples/``
on ``sys.path`` (the pages run the example shop "from examples/"). A block
with top-level ``await`` runs under ``asyncio.run``. A block followed directly
by a ```text block must print exactly that text.

A page written as one session (a tutorial whose blocks build on each other)
says so with this comment anywhere in it::

    <!-- blocks share a namespace: each runs after the ones before it -->

Each of its blocks then runs after the page's earlier runnable blocks, in the
same namespace (their output is not checked again), so a block can be tested
on its own and in any order.

A block that cannot run on its own (a sketch importing an imaginary app, an
API summary, a fragment with placeholders) says so, and why, with an HTML
comment as the last non-blank line before its fence, invisible once rendered::

    <!-- not run: a sketch; myapp is your application -->

    ```python

It is reported as skipped with that reason; a marker without a reason, or not
followed by a python block, fails ``test_not_run_markers``.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import importlib
import inspect
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import tocsin

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
TEXT_AFTER = re.compile(r"\s*```text\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"<!--\s*not run\b(.*?)-->", re.DOTALL)
REASON = re.compile(r"\A:\s*(\S.*?)\s*\Z", re.DOTALL)
SESSION = re.compile(r"<!--\s*blocks share a namespace\b.*?-->", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One ```python block of a page."""

    page: Path
    index: int  # among the page's python blocks
    line: int  # of the block's first line of code, in the page
    code: str
    marker: re.Match[str] | None  # the `<!-- not run ... -->` comment right before the fence
    output: str | None  # the ```text block right after it: what it prints
    previous: tuple[Block, ...] = ()  # on a session page, the runnable blocks before it

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}[{self.index}]"

    @property
    def skip_reason(self) -> str | None:
        if self.marker is None:
            return None
        reason = REASON.match(self.marker.group(1))
        return reason.group(1) if reason else ""


def _blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    blocks: list[Block] = []
    session = SESSION.search(text) is not None
    for index, fence in enumerate(FENCE.finditer(text)):
        before = text[: fence.start()].rstrip()
        start = before.rfind("<!--")
        marker = MARKER.fullmatch(before, start) if start >= 0 else None
        output = TEXT_AFTER.match(text, fence.end())
        blocks.append(
            Block(
                page=page,
                index=index,
                line=text.count("\n", 0, fence.start(1)) + 1,
                code=fence.group(1),
                marker=marker,
                output=output.group(1) if output else None,
                previous=tuple(b for b in blocks if b.skip_reason is None) if session else (),
            )
        )
    return blocks


BLOCKS = [block for page in PAGES for block in _blocks(page)]


def test_pages_found() -> None:
    """The glob finds README.md and the docs pages, and they have blocks to run."""
    assert ROOT / "README.md" in PAGES
    assert ROOT / "docs" / "signals.md" in PAGES
    assert ROOT / "docs" / "reference" / "tocsin.md" in PAGES  # subfolders too
    assert sum(block.skip_reason is None for block in BLOCKS) >= 20


def test_session_pages() -> None:
    """A page marked as one session runs each block after the page's earlier runnable blocks."""
    quickstart = [block for block in BLOCKS if block.page.name == "quickstart.md"]
    assert len(quickstart) >= 3
    assert quickstart[0].previous == ()
    assert quickstart[2].previous == tuple(b for b in quickstart[:2] if b.skip_reason is None)
    signals = [block for block in BLOCKS if block.page.name == "signals.md"]
    assert all(block.previous == () for block in signals)  # unmarked pages: every block on its own


def test_not_run_markers() -> None:
    """Every not-run marker gives a reason and sits right before a python block."""
    attached = {(block.page, block.marker.start()) for block in BLOCKS if block.marker}
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for marker in MARKER.finditer(text):
            where = f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, marker.start()) + 1}"
            if (page, marker.start()) not in attached:
                problems.append(f"{where}: {marker.group(0)!r} is not right before a ```python fence")
            elif not REASON.match(marker.group(1)):
                problems.append(f"{where}: {marker.group(0)!r} gives no reason: write <!-- not run: why -->")
    assert problems == []


@pytest.fixture
def _isolated_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a temporary directory, with examples/ importable and the root logger restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(root, "handlers", list(root.handlers))


@pytest.mark.usefixtures("_isolated_run")
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_example_runs(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    """Each python block runs in a fresh namespace (after the blocks before it on a session page)
    and prints what the page shows."""
    reason = block.skip_reason
    if reason is not None:
        pytest.skip(f"{block.id} not run: {reason}")
    namespace: dict[str, object] = {"__name__": f"docs_{block.page.stem}_{block.index}"}
    try:
        for earlier in block.previous:
            _execute(earlier, namespace)
        capsys.readouterr()  # only this block's output is compared
        _execute(block, namespace)
    finally:
        _release(namespace)
        namespace.clear()  # breaks the functions' cycles through their globals: weak receivers die now
    if block.output is not None:
        assert capsys.readouterr().out == block.output


def _execute(block: Block, namespace: dict[str, object]) -> None:
    # Padded so that tracebacks point at the page's own line numbers.
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    if code.co_flags & inspect.CO_COROUTINE:  # top-level await
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


def _release(namespace: dict[str, object]) -> None:
    """Close what a block left open, as its program would at exit.

    A snippet ends where a program goes on; its engines and job stores
    would be closed at exit. Here they must be closed now: Python 3.13
    reports a SQLite connection collected unclosed (ResourceWarning).
    Its receivers are disconnected from every signal, as its exit would
    take them along: a background receiver stays referenced by its job
    store, which its connection's policy holds, so on a signal that outlives
    the block (a model signal) it would otherwise hear the next block's sends.
    """
    for signal in tocsin.all_signals():
        for connection in signal.connections():
            if connection.module == namespace["__name__"] and not connection.local:
                signal.disconnect(connection.receiver, connection.sender, connection.dispatch_uid)
    for value in list(namespace.values()):
        close = getattr(value, "close", None) if type(value).__name__ == "Jobs" else None
        if close is not None:
            close()
    for value in list(namespace.values()):
        kind = type(value).__name__
        if kind == "Engine" and type(value).__module__.startswith("sqlalchemy"):
            value.dispose()  # type: ignore[attr-defined]
        elif kind == "AsyncEngine" and type(value).__module__.startswith("sqlalchemy"):
            asyncio.run(value.dispose())  # type: ignore[attr-defined]


def _doctest_modules() -> list[str]:
    """The installed tocsin modules whose source holds a ``>>>`` example."""
    package = Path(tocsin.__file__).parent
    names = []
    for path in sorted(package.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


DOCTEST_MODULES = _doctest_modules()


def test_doctest_modules_found() -> None:
    assert {"tocsin.lowlevel", "tocsin.testing", "tocsin._tools.mute"} <= set(DOCTEST_MODULES)


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_doctests(name: str) -> None:
    """The ``>>>`` examples of each module's docstrings pass (``...`` matches anything)."""
    module = importlib.import_module(name)
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    assert tests, f"{name} has '>>>' in its source but no docstring example doctest finds"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
