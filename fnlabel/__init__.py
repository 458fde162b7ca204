"""fnlabel: generate and label data with LLMs, in a functional, config-driven shape.

Examples:
    >>> import fnlabel
    >>> gen = fnlabel.llm(fnlabel.tasks.text_generation(), fnlabel.backends.echo())
    >>> len(gen([{"input": "Hello"}], num_generations=3)[0])
    3
"""

from fnlabel import backends, tasks
from fnlabel.combinators import threaded, with_prompt_format, with_prompt_formatting_fn
from fnlabel.errors import BackendError, ConfigError, FnlabelError, InputError, ParseError, RecipeError
from fnlabel.formats import FORMATS, format_prompt
from fnlabel.llm import LLM, RowFailure, RunResult, llm, max_concurrency
from fnlabel.tasks import Task
from fnlabel.types import GenerationFailure, GenerationParams, LLMOutput, Prompt

__version__ = "0.1.0"

# Names whose modules are imported on first use, so `import fnlabel` stays fast
# and loads no multiprocessing, sqlite or TOML machinery it does not need.
_LAZY = {
    "in_process": "fnlabel.process",
    "pooled": "fnlabel.pool",
    "Recipe": "fnlabel.recipes",
    "build": "fnlabel.recipes",
    "dump_recipe": "fnlabel.recipes",
    "load_recipe": "fnlabel.recipes",
    "on_ray": "fnlabel.ray_engine",
    "cached": "fnlabel.cache",
    "SQLiteStore": "fnlabel.cache_store",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fnlabel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "Recipe",
    "RecipeError",
    "RowFailure",
    "RunResult",
    "SQLiteStore",
    "Task",
    "backends",
    "build",
    "cached",
    "dump_recipe",
    "format_prompt",
    "in_process",
    "llm",
    "load_recipe",
    "max_concurrency",
    "pooled",
    "on_ray",
    "tasks",
    "threaded",
    "with_prompt_format",
    "with_prompt_formatting_fn",
]
