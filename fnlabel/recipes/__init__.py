"""Recipes: TOML files become frozen records through one cattrs converter.

* ``records``: the records a recipe becomes (:class:`Recipe`, its stages, ``[run]``);
* ``converter``: the one cattrs converter (:func:`~fnlabel.recipes.converter.configure_converter`);
* ``messages``: what recipe errors say (key paths, unknown keys, type names);
* ``dump``: records back to TOML, secrets left out;
* ``load``: :func:`load_recipe`, :func:`loads_recipe`, :func:`build`, :func:`dump_recipe`.
"""

from fnlabel.recipes.load import build, dump_recipe, load_recipe, loads_recipe
from fnlabel.recipes.records import LabelStage, PoolMember, Recipe, RunSpec, Stage, TaskSpec

__all__ = [
    "Recipe",
    "Stage",
    "LabelStage",
    "PoolMember",
    "RunSpec",
    "TaskSpec",
    "load_recipe",
    "loads_recipe",
    "build",
    "dump_recipe",
]
