"""fnlabel: generate and label data with LLMs, in a functional, config-driven shape.

Example:
    >>> import fnlabel
    >>> gen = fnlabel.llm(fnlabel.tasks.text_generation(), fnlabel.backends.echo())
    >>> len(gen([{"input": "Hello"}], num_generations=3)[0])
    3
"""

from fnlabel import backends, tasks
from fnlabel.cache import SQLiteStore, cached
from fnlabel.combinators import threaded, with_prompt_format, with_prompt_formatting_fn
from fnlabel.errors import BackendError, ConfigError, FnlabelError, InputError, ParseError, RecipeError
from fnlabel.formats import FORMATS, format_prompt
from fnlabel.llm import LLM, RowFailure, RunResult, llm
from fnlabel.tasks import Task
from fnlabel.types import GenerationFailure, GenerationParams, LLMOutput, Prompt

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "FORMATS",
    "FnlabelError",
    "GenerationFailure",
    "GenerationParams",
    "InputError",
    "LLM",
    "LLMOutput",
    "ParseError",
    "Prompt",
    "RecipeError",
    "RowFailure",
    "RunResult",
    "SQLiteStore",
    "Task",
    "backends",
    "cached",
    "format_prompt",
    "llm",
    "tasks",
    "threaded",
    "with_prompt_format",
    "with_prompt_formatting_fn",
]
