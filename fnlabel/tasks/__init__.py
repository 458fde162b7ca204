"""Tasks: records of pure ``build_prompt`` / ``parse`` functions."""

from fnlabel.tasks.base import Task
from fnlabel.tasks.text_generation import text_generation

__all__ = ["Task", "text_generation"]
