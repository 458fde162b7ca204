"""``LLMSpec``: a picklable description of one LLM, built where it runs.

An :class:`LLMSpec` is what crosses a process boundary instead of a loaded model:
``in_process`` sends it to its child, a recipe becomes one per LLM, and Ray
replicas build their LLM from the recipe's. ``build()`` composes the LLM with
:func:`fnlabel.llm`, then caches it when the spec carries a cache store.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import attrs

from fnlabel.combinators.cache import cached
from fnlabel.errors import ConfigError
from fnlabel.llm import LLM, llm
from fnlabel.types import FormattedPrompt, GenerationParams, Prompt, Task

__all__ = ["LLMSpec", "import_object"]


def import_object(path: str) -> Any:
    """Import ``"package.module:name"`` (for ``prompt_formatting_fn``), with errors that say what to fix.

    Examples:
        >>> import_object("fnlabel.formats:as_chatml").__name__
        'as_chatml'
    """
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"expected 'package.module:function', got {path!r}")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module!r} ({exc}); is it installed or on PYTHONPATH?") from exc
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module!r} has no attribute {name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{path!r} is not callable")
    return obj


def _buildable(what: str) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if not callable(getattr(value, "build", None)):
            raise ConfigError(f"LLMSpec.{what} must be a {what} config with build(), got {type(value).__name__}")

    return check


def _task(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, Task) and not callable(getattr(value, "build", None)):
        raise ConfigError(f"LLMSpec.task must be a Task or a task spec with build(), got {type(value).__name__}")


@attrs.frozen
class LLMSpec:
    """Everything one LLM needs: a task, a backend config and params; picklable.

    Attributes:
        task: a :class:`~fnlabel.types.Task` (its functions must pickle: top-level functions
            or frozen attrs callables, as the built-in tasks are) or a recipe's task spec.
        backend: a backend config record (its ``build()`` loads the model, where the spec is built).
        params: the sampling params.
        model_name: as for :func:`fnlabel.llm`.
        prompt_format: as for :func:`fnlabel.llm`.
        prompt_formatting_fn: a picklable callable or ``"package.module:function"``.
        cache: a per-sample cache store or file path, applied where the LLM is built (so an
            ``in_process`` child caches in its own process).
        metadata: as for :func:`fnlabel.llm` (each output's finish reason, tokens and logprobs).

    Examples:
        >>> from fnlabel import tasks
        >>> from fnlabel.backends import EchoConfig
        >>> LLMSpec(tasks.text_generation(), EchoConfig(model_name="e")).build().model_name
        'e'
    """

    task: Any = attrs.field(validator=_task)
    backend: Any = attrs.field(validator=_buildable("backend"))
    params: GenerationParams = GenerationParams()
    model_name: str | None = None
    prompt_format: str | None = None
    prompt_formatting_fn: str | Callable[[Prompt], FormattedPrompt] | None = None
    cache: Any = attrs.field(default=None, eq=False)
    metadata: bool = False

    def build(self) -> Any:
        """The LLM, built in this process (this loads the model)."""
        fn = self.prompt_formatting_fn
        task = self.task if isinstance(self.task, Task) else self.task.build()
        built: LLM = llm(
            task,
            self.backend.build(),
            self.params,
            model_name=self.model_name,
            prompt_format=self.prompt_format,
            prompt_formatting_fn=import_object(fn) if isinstance(fn, str) else fn,
            metadata=self.metadata,
        )
        return built if self.cache is None else cached(built, self.cache)
