"""Tasks: records of pure ``build_prompt`` / ``parse`` functions.

``TASKS`` maps each recipe ``kind`` to its factory; a recipe's ``[task]`` keys
are that factory's keyword arguments.
"""

from collections.abc import Callable

from fnlabel.tasks.base import Task
from fnlabel.tasks.text_generation import text_generation
from fnlabel.tasks.instruct import self_instruct
from fnlabel.tasks.evol import evol_complexity, evol_instruct, evol_quality
from fnlabel.tasks.feedback import ultrafeedback
from fnlabel.tasks.judges import judgelm, ultrajudge
from fnlabel.tasks.critique import prometheus, ultracm
from fnlabel.tasks.deita import complexity_scorer, quality_scorer

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
]

#: recipe ``kind`` -> factory returning a Task
TASKS: dict[str, Callable[..., Task]] = {
    "text-generation": text_generation,
    "self-instruct": self_instruct,
    "evol-instruct": evol_instruct,
    "evol-complexity": evol_complexity,
    "evol-quality": evol_quality,
    "ultrafeedback": ultrafeedback,
    "judgelm": judgelm,
    "ultrajudge": ultrajudge,
    "ultracm": ultracm,
    "prometheus": prometheus,
    "complexity-scorer": complexity_scorer,
    "quality-scorer": quality_scorer,
}
