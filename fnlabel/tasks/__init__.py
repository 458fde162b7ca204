"""Tasks: records of pure ``build_prompt`` / ``parse`` functions.

``TASKS`` maps each recipe ``kind`` to its factory; a recipe's ``[task]`` keys
are that factory's keyword arguments.
"""

from collections.abc import Callable

from fnlabel.tasks.base import Task
from fnlabel.tasks.text_generation import text_generation

__all__ = ["TASKS", "Task", "text_generation"]

#: recipe ``kind`` -> factory returning a Task
TASKS: dict[str, Callable[..., Task]] = {
    "text-generation": text_generation,
}
