# ruff: noqa: INP001 - a file mkdocs.yml loads by path, not a package
"""A griffe extension for the API reference: the reST bits of tocsin's docstrings as Markdown.

The docstrings are Google style (what mkdocstrings parses) but use a little reST, which the
Markdown renderer would print literally: roles (:class:`Signal`, :func:`capture`), a paragraph
ending in ``::`` before an indented example, ``.. versionadded:: 0.1``. This rewrites them in
the docstring text griffe hands to mkdocstrings; the source files are not changed. Loaded from
mkdocs.yml (``extensions:`` of the python handler).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):`~?([^`]+)`")
VERSION = re.compile(r"^(\s*)\.\. (versionadded|versionchanged|deprecated):: *(\S+)(.*)$", re.MULTILINE)
LITERAL = re.compile(r"(\S)::$", re.MULTILINE)  # "Example::" -> "Example:" (the indented block stays code)
WORDS = {
    "versionadded": "New in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since",
}


def rewrite(text: str) -> str:
    """*text* with reST roles, version directives and ``::`` paragraph ends as Markdown."""
    text = ROLE.sub(r"`\1`", text)
    text = VERSION.sub(lambda m: f"{m.group(1)}*{WORDS[m.group(2)]} {m.group(3)}.*{m.group(4)}", text)
    text = text.replace("``", "`")
    return LITERAL.sub(r"\1:", text)


class SphinxMarkup(griffe.Extension):
    """Rewrite every docstring griffe loads (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002 - griffe's hook signature
        """Rewrite the docstring of *obj*, each object griffe loads."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
