"""Reading and writing recipes: TOML text in, frozen records out, and back.

:func:`load_recipe` reads and validates a file, :func:`build` composes the LLM it
describes, :func:`dump_recipe` writes it back as TOML (``load(dump(r)) == r``;
secrets are never written).

Examples:
    >>> recipe = loads_recipe('''
    ... [task]
    ... kind = "text-generation"
    ... system_prompt = ""
    ... [backend]
    ... kind = "echo"
    ... [params]
    ... max_new_tokens = 2
    ... ''')
    >>> gen = recipe.build()
    >>> gen([{"input": "one two three"}])[0][0]["raw_output"]  # doctest: +ELLIPSIS
    '[0:...] one two'
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cattrs.errors import ClassValidationError, IterableValidationError

from fnlabel.errors import ConfigError, RecipeError
from fnlabel.recipes.converter import converter
from fnlabel.recipes.dump import dump
from fnlabel.recipes.messages import error_lines
from fnlabel.recipes.records import Recipe

__all__ = ["loads_recipe", "load_recipe", "build", "dump_recipe"]


def loads_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe TOML ``text``; errors name ``source`` and the key path."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: invalid TOML: {exc}") from exc
    try:
        return converter.structure(data, Recipe)
    except (ClassValidationError, IterableValidationError) as exc:
        lines = error_lines(exc)
        raise RecipeError("\n".join(f"{source}: {line}" for line in lines)) from exc
    except ConfigError as exc:
        raise RecipeError(f"{source}: {exc}") from exc


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe file at ``path``.

    Examples:
        >>> load_recipe("recipes/echo.toml").backend.kind
        'echo'
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: a BOM some editors write is not TOML
    except FileNotFoundError as exc:
        raise RecipeError(
            f"{path}: no such recipe file (check the path; `fnlabel list` shows the recipes in ./recipes)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
    return loads_recipe(text, str(path))


def build(recipe: Recipe, cache: Any = None, *, metadata: bool = False) -> Any:
    """Compose the LLM a recipe describes (``recipe.build(cache, metadata)``); see :meth:`Recipe.build`.

    Examples:
        >>> gen = build(load_recipe("recipes/echo.toml"))
        >>> len(gen([{"input": "hi"}], num_generations=2)[0])
        2
    """
    return recipe.build(cache, metadata)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as TOML; ``load(dump(r)) == r``; secret fields are never written."""
    return dump(recipe)
