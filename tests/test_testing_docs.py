"""The runnable examples in docs/testing.md, docs/tools.md and docs/typing.md run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
PAGES = ["testing.md", "tools.md", "typing.md"]


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = (DOCS / page).read_text()
        for index, match in enumerate(re.finditer(r"```python\n(.*?)```", text, re.DOTALL)):
            code = match.group(1)
            if "myapp" not in code:  # the pytest plugin sketch imports an imaginary app
                found.append((page, index, code))
    return found


@pytest.mark.parametrize(("page", "index", "code"), _blocks(), ids=lambda v: str(v)[:20])
def test_example_runs(page: str, index: int, code: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each python block runs on its own, in a fresh namespace."""
    namespace = {"__name__": f"docs_{page[:-3]}_{index}"}
    exec(compile(code, f"{page}[{index}]", "exec", dont_inherit=True), namespace)
