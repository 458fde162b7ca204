"""Prompt templates: the built-in ones, or a file of the user's, filled with ``{placeholder}`` values.

fnlabel's built-in templates are its own wording of the published prompts (every instruction
is there, with fnlabel's output format). A task that must send a specific published text (a
paper's exact UltraFeedback, JudgeLM or Prometheus prompt) takes ``template = "path"``: the
file's text is used instead, with the task's placeholders filled in the same way and the same
parser reading the answer. Placeholders are ``{name}``; other braces are left as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from fnlabel.errors import ConfigError

__all__ = ["fill", "fill_description", "read_template"]

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced, in one pass (a value is never filled again).

    Examples:
        >>> fill("Q: {input}\\nA: {answer} {x}", {"input": "is {answer} here?", "answer": "yes"})
        'Q: is {answer} here?\\nA: yes {x}'
    """
    return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


def fill_description(description: str, **values: str) -> str:
    """A task description with each ``{key}`` of ``values`` replaced, stripped.

    ``str.replace``, not ``str.format``: a user's description may contain other braces.

    Examples:
        >>> fill_description(" Rate the {n} answers {like: this}. ", n="2")
        'Rate the 2 answers {like: this}.'
    """
    for key, value in values.items():
        description = description.replace("{" + key + "}", value)
    return description.strip()


def read_template(
    path: str | os.PathLike[str], *, task: str, placeholders: Sequence[str], required: Sequence[str]
) -> str:
    """The text of a template file for ``task``, checked: it must use ``required`` and nothing but ``placeholders``."""
    p = Path(path).expanduser()
    known = ", ".join("{" + name + "}" for name in placeholders)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{task} template {path}: no such file (relative paths are read from the current directory, {Path.cwd()})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{task} template {path}: cannot read it as UTF-8 text ({exc})") from exc
    used = set(_PLACEHOLDER.findall(text))
    missing = [name for name in required if name not in used]
    if missing:
        shown = ", ".join("{" + name + "}" for name in missing)
        raise ConfigError(
            f"{task} template {path} does not use {shown}: the row's text would never reach the model; "
            f"this task's placeholders are {known}"
        )
    unknown = sorted(used - set(placeholders))
    if unknown:
        shown = ", ".join("{" + name + "}" for name in unknown)
        raise ConfigError(
            f"{task} template {path} uses {shown}, which this task does not fill; its placeholders are {known}"
        )
    return text
