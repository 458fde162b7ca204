"""Griffe extension for the API reference: read ``Example:`` sections as doctest examples.

fnlabel docstrings use Google style with an ``Example:`` section holding ``>>>``
lines (they run as doctests, see tests/test_docs.py). Griffe's Google parser
knows only the plural ``Examples:``; a singular one becomes an admonition whose
``>>>`` lines render as prose (and ``[[...]]`` outputs as broken links). This
renames the section header before the docstring is parsed.

Used by mkdocs.yml (mkdocstrings ``extensions: [tools/griffe_examples.py]``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADER = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headers to ``Examples:`` in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is not None and "Example:" in doc.value:
            doc.value = _HEADER.sub(r"\g<indent>Examples:", doc.value)
