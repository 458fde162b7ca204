"""Tasks: records of pure ``build_prompt`` / ``parse`` functions.

``TASKS`` maps each recipe ``kind`` to its factory; a recipe's ``[task]`` keys
are that factory's keyword arguments. Installed plugins add kinds through
entry points in group ``fnlabel.tasks`` (name: the kind, value: the factory);
see docs/plugins.md.
"""

from typing import Any

from fnlabel.errors import ConfigError
from fnlabel.registry import Registry
from fnlabel.tasks.critique import prometheus, ultracm
from fnlabel.tasks.deita import complexity_scorer, quality_scorer
from fnlabel.tasks.evol import evol_complexity, evol_instruct, evol_quality
from fnlabel.tasks.feedback import ultrafeedback
from fnlabel.tasks.instruct import self_instruct
from fnlabel.tasks.judges import judgelm, ultrajudge
from fnlabel.tasks.structured import structured
from fnlabel.tasks.text_generation import text_generation
from fnlabel.types import Task

__all__ = [
    "TASKS",
    "Task",
    "text_generation",
    "self_instruct",
    "evol_instruct",
    "evol_complexity",
    "evol_quality",
    "ultrafeedback",
    "judgelm",
    "ultrajudge",
    "ultracm",
    "prometheus",
    "complexity_scorer",
    "quality_scorer",
    "structured",
]


def _check_factory(kind: str, factory: Any) -> None:
    if not callable(factory):
        raise ConfigError(f"task kind {kind!r} names {factory!r}, which is not a factory function returning a Task")


#: recipe ``kind`` -> factory returning a Task (built-ins, then the ``fnlabel.tasks`` plugins)
TASKS: Registry = Registry(
    "task",
    "fnlabel.tasks",
    {
        "text-generation": "fnlabel.tasks.text_generation:text_generation",
        "self-instruct": "fnlabel.tasks.instruct:self_instruct",
        "evol-instruct": "fnlabel.tasks.evol:evol_instruct",
        "evol-complexity": "fnlabel.tasks.evol:evol_complexity",
        "evol-quality": "fnlabel.tasks.evol:evol_quality",
        "ultrafeedback": "fnlabel.tasks.feedback:ultrafeedback",
        "judgelm": "fnlabel.tasks.judges:judgelm",
        "ultrajudge": "fnlabel.tasks.judges:ultrajudge",
        "ultracm": "fnlabel.tasks.critique:ultracm",
        "prometheus": "fnlabel.tasks.critique:prometheus",
        "complexity-scorer": "fnlabel.tasks.deita:complexity_scorer",
        "quality-scorer": "fnlabel.tasks.deita:quality_scorer",
        "structured": "fnlabel.tasks.structured:structured",
    },
    check=_check_factory,
)
