"""fnlabel: generate and label data with LLMs, in a functional, config-driven shape.

Examples:
    >>> import fnlabel
    >>> gen = fnlabel.llm(fnlabel.tasks.text_generation(), fnlabel.backends.echo())
    >>> len(gen([{"input": "Hello"}], num_generations=3)[0])
    3
"""

from fnlabel import backends, tasks
from fnlabel.combinators import threaded, with_prompt_format, with_prompt_formatting_fn
from fnlabel.errors import BackendError, ConfigError, FnlabelError, InputError, OutputError, ParseError, RecipeError
from fnlabel.formats import FORMATS, format_prompt
from fnlabel.llm import LLM, llm, max_concurrency
from fnlabel.registry import lazy_exports
from fnlabel.types import (
    Generation,
    GenerationFailure,
    GenerationParams,
    LLMLike,
    LLMOutput,
    Prompt,
    RowFailure,
    RunResult,
    Task,
    text_of,
)

__version__ = "0.1.0"

# Names whose modules are imported on first use, so `import fnlabel` stays fast
# and loads no multiprocessing, sqlite, TOML or Ray machinery it does not need.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "in_process": "fnlabel.combinators.process",
        "pooled": "fnlabel.combinators.pool",
        "LLMSpec": "fnlabel.combinators.spec",
        "cached": "fnlabel.combinators.cache",
        "SQLiteStore": "fnlabel.combinators.store",
        "Recipe": "fnlabel.recipes",
        "build": "fnlabel.recipes",
        "dump_recipe": "fnlabel.recipes",
        "load_recipe": "fnlabel.recipes",
        "on_ray": "fnlabel.run.ray",
    },
)

__all__ = [
    "BackendError",
    "ConfigError",
    "FORMATS",
    "FnlabelError",
    "Generation",
    "GenerationFailure",
    "GenerationParams",
    "InputError",
    "LLM",
    "LLMLike",
    "LLMOutput",
    "LLMSpec",
    "OutputError",
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
    "on_ray",
    "pooled",
    "tasks",
    "text_of",
    "threaded",
    "with_prompt_format",
    "with_prompt_formatting_fn",
]
