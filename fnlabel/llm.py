"""Composing a task, a backend and params into the LLM callable.

``llm(inputs, num_generations=k)`` returns one list per input, each holding
``k`` :class:`~fnlabel.types.LLMOutput` dicts, in input order. ``llm.run``
returns the same outputs plus the failures of the call (bad rows, failed
generations, parse errors), and ``llm.submit`` returns a Future of that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from fnlabel.errors import BackendError, ConfigError
from fnlabel.formats import FORMATS, check_format
from fnlabel.tasks.base import Task
from fnlabel.types import (
    Backend,
    FormattedPrompt,
    GenerationFailure,
    GenerationParams,
    Input,
    LLMOutput,
    Prompt,
)

__all__ = ["LLM", "llm", "RowFailure", "RunResult", "backend_name", "check_num_generations"]

log = logging.getLogger("fnlabel")


@attrs.frozen
class RowFailure:
    """Why row ``row`` (or only its generation ``generation``) has no output.

    ``stage`` is ``"input"`` (missing keys, build_prompt failed), ``"backend"``
    (the generation failed, e.g. retries exhausted) or ``"parse"``.
    """

    row: int
    generation: int | None
    stage: str
    error: str


@attrs.frozen
class RunResult:
    """The outputs of one call plus what failed in it."""

    outputs: list[list[LLMOutput]]
    failures: tuple[RowFailure, ...] = ()


def backend_name(backend: object) -> str:
    """A readable name for a backend in error messages."""
    name = getattr(backend, "model_name", None)
    kind = getattr(backend, "__qualname__", None) or type(backend).__name__
    return f"{kind} ({name})" if name and name != kind else kind


def check_num_generations(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"num_generations must be an integer >= 1, got {k!r}")
    return k


_pool: ThreadPoolExecutor | None = None


def shared_pool() -> ThreadPoolExecutor:
    """The thread pool that runs ``submit`` of plain LLMs (created on first use)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fnlabel")
    return _pool


def _default_model_name(backend: object) -> str:
    return getattr(backend, "model_name", None) or getattr(backend, "__name__", None) or type(backend).__name__


@attrs.frozen
class LLM:
    """A task, a backend and params composed into a callable. Make one with :func:`llm`."""

    task: Task
    backend: Backend
    params: GenerationParams = GenerationParams()
    model_name: str = attrs.field(default=attrs.Factory(lambda s: _default_model_name(s.backend), takes_self=True))
    prompt_format: str | None = None
    prompt_formatting_fn: Callable[[Prompt], FormattedPrompt] | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.task, Task):
            raise ConfigError(f"task must be a fnlabel Task, got {type(self.task).__name__}")
        if not callable(self.backend):
            raise ConfigError(f"backend must be callable as generate(prompts, params), got {self.backend!r}")
        if not isinstance(self.params, GenerationParams):
            raise ConfigError(f"params must be GenerationParams, got {type(self.params).__name__}")
        # also the backend's natural format: a bad one must fail now, not at the first row
        check_format(self.effective_format)
        if self.prompt_formatting_fn is not None and not callable(self.prompt_formatting_fn):
            raise ConfigError("prompt_formatting_fn must be callable as fn(prompt: Prompt)")
        check = getattr(self.backend, "check_params", None)
        if check is not None:
            check(self.params)

    @property
    def effective_format(self) -> str:
        """The prompt format in use: the LLM's own, else the backend's natural one."""
        return self.prompt_format or getattr(self.backend, "prompt_format", None) or "default"

    def format(self, prompt: Prompt) -> FormattedPrompt:
        """Apply the formatting fn (which wins when set) or the prompt format."""
        if self.prompt_formatting_fn is not None:
            return self.prompt_formatting_fn(prompt)
        return FORMATS[self.effective_format](prompt)

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> list[list[LLMOutput]]:
        """Generate ``num_generations`` outputs for each input.

        Example:
            >>> from fnlabel import llm, tasks, backends
            >>> gen = llm(tasks.text_generation(system_prompt=""), backends.echo())
            >>> [[o["raw_output"] for o in row] for row in gen([{"input": "hi"}], num_generations=2)]  # doctest: +ELLIPSIS
            [['[0:...] hi', '[1:...] hi']]
        """
        return self.run(inputs, num_generations).outputs

    generate = __call__

    def submit(self, inputs: Sequence[Input], num_generations: int = 1) -> Future[RunResult]:
        """Run in a background thread; a Future of :class:`RunResult`."""
        return shared_pool().submit(self.run, list(inputs), num_generations)

    def run(self, inputs: Sequence[Input], num_generations: int = 1) -> RunResult:
        """Like calling the LLM, but also return the failures of the call."""
        k = check_num_generations(num_generations)
        params = self.params if k == self.params.num_generations else self.params.replace(num_generations=k)
        task, failures = self.task, []
        prompts: list[FormattedPrompt] = []
        rows: list[int] = []
        for i, row in enumerate(inputs):
            missing = task.missing_keys(row)
            if missing:
                failures.append(RowFailure(i, None, "input", f"missing key(s) {missing}"))
                continue
            try:
                prompts.append(self.format(task.build_prompt(row)))
            except Exception as exc:  # a bad row must not stop the others
                failures.append(RowFailure(i, None, "input", f"{type(exc).__name__}: {exc}"))
                continue
            rows.append(i)
        for f in failures:
            log.warning("row %d skipped: %s (task %s needs %s)", f.row, f.error, task.name, list(task.input_keys))
        raw = self._call_backend(prompts, params) if prompts else []
        empty: LLMOutput = {"model_name": self.model_name, "prompt_used": None, "raw_output": None, "parsed_output": None}
        outputs: list[list[LLMOutput]] = [[]] * len(inputs)
        if failures:
            for f in failures:
                outputs[f.row] = [dict(empty) for _ in range(k)]  # type: ignore[misc]
        parse, name, seen = task.parse, self.model_name, set()
        for j, i in enumerate(rows):
            prompt, row_out = prompts[j], []
            for g, text in enumerate(raw[j]):
                parsed = None
                if isinstance(text, GenerationFailure):
                    failures.append(RowFailure(i, g, "backend", text.error))
                    log.error("row %d generation %d failed: %s", i, g, text.error)
                    text = None
                else:
                    try:
                        parsed = parse(text)
                    except Exception as exc:
                        msg = f"{type(exc).__name__}: {exc}"
                        failures.append(RowFailure(i, g, "parse", msg))
                        if msg not in seen:
                            seen.add(msg)
                            log.warning("parse failed (row %d, generation %d; logged once): %s", i, g, msg)
                row_out.append({"model_name": name, "prompt_used": prompt, "raw_output": text, "parsed_output": parsed})
            outputs[i] = row_out  # type: ignore[assignment]
        return RunResult(outputs, tuple(failures))

    def _call_backend(self, prompts: list[FormattedPrompt], params: GenerationParams) -> list[list[Any]]:
        raw = self.backend(prompts, params)
        k = params.num_generations
        if not isinstance(raw, list) or len(raw) != len(prompts):
            got = len(raw) if isinstance(raw, list) else type(raw).__name__
            raise BackendError(
                f"backend {backend_name(self.backend)} returned {got} results for {len(prompts)} prompts"
            )
        for j, gens in enumerate(raw):
            if not isinstance(gens, list) or len(gens) != k:
                got = len(gens) if isinstance(gens, list) else type(gens).__name__
                raise BackendError(
                    f"backend {backend_name(self.backend)} returned {got} generations for prompt {j}, expected {k}"
                )
        return raw


def llm(
    task: Task,
    backend: Backend,
    params: GenerationParams | None = None,
    model_name: str | None = None,
    prompt_format: str | None = None,
    prompt_formatting_fn: Callable[[Prompt], FormattedPrompt] | None = None,
) -> LLM:
    """Compose ``task`` and ``backend`` into an LLM callable.

    Args:
        task: what to ask and how to read the answers (see :mod:`fnlabel.tasks`).
        backend: any ``generate(prompts, params) -> list[list[str]]``.
        params: sampling params; ``num_generations`` is set per call.
        model_name: reported in each output; default: the backend's ``model_name``.
        prompt_format: one of :data:`fnlabel.formats.FORMATS`; default: the backend's natural format.
        prompt_formatting_fn: ``fn(Prompt) -> str | messages``; when set, it is used instead of the format.

    Example:
        >>> from fnlabel import llm, tasks, backends, GenerationParams
        >>> gen = llm(tasks.text_generation(), backends.echo(), GenerationParams(max_new_tokens=3))
        >>> out = gen([{"input": "one two three four"}])
        >>> out[0][0]["parsed_output"]["generations"]  # doctest: +ELLIPSIS
        '[0:...] You are a'
    """
    kw: dict[str, Any] = {"params": params or GenerationParams()}
    if model_name is not None:
        kw["model_name"] = model_name
    return LLM(task, backend, prompt_format=prompt_format, prompt_formatting_fn=prompt_formatting_fn, **kw)
