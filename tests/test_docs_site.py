"""The docs site's griffe extension (docs/_ext/sphinx_markup.py): reST in docstrings rendered as Markdown.

`make docs-check` builds the whole site with --strict; this checks the rewriting itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("griffe", reason="griffe comes with the docs group (make installs it)")

PATH = Path(__file__).resolve().parent.parent / "docs" / "_ext" / "sphinx_markup.py"
spec = importlib.util.spec_from_file_location("sphinx_markup", PATH)
assert spec is not None
assert spec.loader is not None
sphinx_markup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sphinx_markup)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "A :class:`Signal` and :func:`~tocsin.testing.capture`.",
            "A `Signal` and `tocsin.testing.capture`.",
        ),
        ("Raises :exc:`ValueError`; see :meth:`Jobs.later`.", "Raises `ValueError`; see `Jobs.later`."),
        ("Use ``send()`` here.", "Use `send()` here."),
        ("Example::\n\n    >>> 1\n    1", "Example:\n\n    >>> 1\n    1"),
        ("Text.\n\n.. versionadded:: 0.1\n", "Text.\n\n*New in version 0.1.*\n"),
        ("    .. versionchanged:: 0.2 (keeps the rest)", "    *Changed in version 0.2.* (keeps the rest)"),
        ("A ratio: 3 :: 4 stays.", "A ratio: 3 :: 4 stays."),
    ],
)
def test_rewrite(text: str, expected: str) -> None:
    assert sphinx_markup.rewrite(text) == expected
