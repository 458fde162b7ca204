"""Composing a task, a backend and params into the LLM callable.

``llm(inputs, num_generations=k)`` returns one list per input, each holding
``k`` :class:`~fnlabel.types.LLMOutput` dicts, in input order. ``llm.run``
returns the same outputs plus the failures of the call (bad rows, failed
generations, parse errors), and ``llm.submit`` returns a Future of that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from fnlabel.backends.base import as_backend, describe_backend
from fnlabel.errors import BATCH_PENDING, BackendError, ConfigError, InputError
from fnlabel.formats import FORMATS, check_format
from fnlabel.llm.base import LLMBase, as_rows, check_call
from fnlabel.llm.constraints import constrained_params, output_parser, row_groups, truncated_json
from fnlabel.types import (
    Backend,
    FormattedPrompt,
    Generation,
    GenerationFailure,
    GenerationParams,
    Input,
    LLMOutput,
    Prompt,
    RowFailure,
    RunResult,
    Task,
)
from fnlabel.validators import boolean
from fnlabel.validators import text as non_empty_text

__all__ = ["LLM", "llm"]

log = logging.getLogger("fnlabel")


def _no_metadata(logprobs: bool) -> dict[str, Any]:
    """The metadata of a generation the backend said nothing about (a plain string, or a failure)."""
    meta: dict[str, Any] = {"finish_reason": None, "input_tokens": None, "output_tokens": None}
    if logprobs:
        meta["logprobs"] = None
    return meta


def _not_a_dict(task: Task, i: int, row: object) -> str:
    keys = ", ".join(task.input_keys)
    return f"each input must be a dict of the task's keys ({keys}): row {i} is a {type(row).__name__} ({row!r:.60})"


@attrs.frozen
class LLM(LLMBase):
    """A task, a backend and params composed into a callable. Make one with :func:`llm`."""

    task: Task
    backend: Backend = attrs.field(converter=as_backend)
    params: GenerationParams = GenerationParams()
    model_name: str = attrs.field(
        default=attrs.Factory(lambda s: s.backend.model_name, takes_self=True), validator=non_empty_text()
    )
    prompt_format: str | None = None
    prompt_formatting_fn: Callable[[Prompt], FormattedPrompt] | None = None
    #: give each output a ``metadata`` key (finish reason, tokens, logprobs): see :class:`~fnlabel.types.LLMOutput`
    metadata: bool = attrs.field(default=False, validator=boolean())

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.task, Task):
            raise ConfigError(f"task must be a fnlabel Task, got {type(self.task).__name__}")
        if not isinstance(self.params, GenerationParams):
            raise ConfigError(f"params must be GenerationParams, got {type(self.params).__name__}")
        # also the backend's natural format: a bad one must fail now, not at the first row
        check_format(self.effective_format)
        if self.prompt_formatting_fn is not None and not callable(self.prompt_formatting_fn):
            raise ConfigError("prompt_formatting_fn must be callable as fn(prompt: Prompt)")
        object.__setattr__(self, "params", constrained_params(self.task, self.params))  # a task's own schema
        self.backend.check_params(self.params)

    @property
    def json_output(self) -> bool:
        """Generations are JSON constrained by a schema (a cut one is a parse failure)."""
        constraint = self.params.structured_output
        return constraint is not None and constraint.json_schema is not None

    @property
    def max_concurrency(self) -> int:
        """The backend's (see :func:`max_concurrency`)."""
        return self.backend.max_concurrency

    @property
    def effective_format(self) -> str:
        """The prompt format in use: the LLM's own, else the backend's natural one."""
        return self.prompt_format or self.backend.prompt_format or "default"

    def format(self, prompt: Prompt) -> FormattedPrompt:
        """Apply the formatting fn (which wins when set) or the prompt format."""
        return self.formatter()(prompt)

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> list[list[LLMOutput]]:
        """Generate ``num_generations`` outputs for each input.

        Examples:
            >>> from fnlabel import llm, tasks, backends
            >>> gen = llm(tasks.text_generation(system_prompt=""), backends.echo())
            >>> [[o["raw_output"] for o in row] for row in gen([{"input": "hi"}], num_generations=2)]  # doctest: +ELLIPSIS
            [['[0:...] hi', '[1:...] hi']]
        """
        return self.run(inputs, num_generations).outputs

    def map_inner(self, change: Callable[[LLM], LLM]) -> LLM:
        """``change(self)``: a plain LLM is the innermost LLM of any combinator."""
        return change(self)

    def close(self) -> None:
        """Release the backend's resources (an HTTP backend's client and loop, a local model)."""
        self.backend.close()

    def formatter(self) -> Callable[[Prompt], FormattedPrompt]:
        """The function that formats each prompt (resolved once per call, not once per row)."""
        return self.prompt_formatting_fn or FORMATS[self.effective_format]

    def run(self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0) -> RunResult:
        """Like calling the LLM, but also return the failures of the call.

        ``first_generation`` (used by :func:`fnlabel.pooled`): the outputs are generations
        ``first_generation..first_generation+num_generations-1`` of each row, seeded and
        cached as such, so pool members that share a model do not repeat each other's.
        """
        k, first = check_call(num_generations, first_generation)
        params = self.params if k == self.params.num_generations else self.params.replace(num_generations=k)
        inputs = as_rows(inputs)
        # Each stage tries a fast path over all rows first (tight loops, no bookkeeping:
        # this is fnlabel's per-input overhead, see benchmarks/overhead.py). The fast path
        # gives up at the first row that needs care, and the careful path redoes the stage
        # row by row (tasks' functions are pure, so redoing is safe).
        prompts = self._prompts_fast(inputs)
        if prompts is None:
            prompts, rows, failures = self._prompts_each(inputs)
        else:
            rows, failures = list(range(len(inputs))), []
        groups = row_groups(self.task, inputs, rows, params) if prompts else None
        if groups is None:
            raw = self._call_backend(prompts, params, first) if prompts else []
        else:  # each row asks for its own answer's shape (one rating per text of the row)
            raw = self._call_grouped(prompts, groups, first)
        outputs = None if failures else self._outputs_fast(prompts, raw, k)
        if outputs is None:
            outputs = self._outputs_each(len(inputs), rows, prompts, raw, k, failures)
        return RunResult(outputs, tuple(failures))

    def _prompts_fast(self, inputs: Sequence[Input]) -> list[FormattedPrompt] | None:
        """Every row's prompt, or None if some row is bad (missing keys, build or format fails)."""
        keys = self.task.input_keys
        if len(keys) == 1:
            key = keys[0]
            for row in inputs:
                if row.__class__ is not dict or key not in row:
                    return None
        else:
            wanted = frozenset(keys)
            for row in inputs:
                if row.__class__ is not dict or not row.keys() >= wanted:
                    return None
        build, fmt = self.task.build_prompt, self.formatter()
        try:
            return [fmt(build(row)) for row in inputs]
        except Exception:
            return None

    def _prompts_each(self, inputs: Sequence[Input]) -> tuple[list[FormattedPrompt], list[int], list[RowFailure]]:
        """Prompts of the good rows, their row indices, and a failure for each bad row."""
        task, build, fmt = self.task, self.task.build_prompt, self.formatter()
        prompts: list[FormattedPrompt] = []
        rows: list[int] = []
        failures: list[RowFailure] = []
        if inputs and not any(isinstance(row, Mapping) for row in inputs):  # a mistake of the caller: nothing works
            raise InputError(f"{_not_a_dict(task, 0, inputs[0])}, e.g. [{{{task.input_keys[0]!r}: ...}}]")
        for i, row in enumerate(inputs):
            if not isinstance(row, Mapping):
                failures.append(RowFailure(i, None, "input", _not_a_dict(task, i, row)))
                continue
            missing = task.missing_keys(row)
            if missing:
                failures.append(RowFailure(i, None, "input", f"missing key(s) {missing}"))
                continue
            try:
                prompt = build(row)
            except Exception as exc:  # a bad row must not stop the others
                failures.append(RowFailure(i, None, "input", f"{type(exc).__name__}: {exc}"))
                continue
            prompts.append(self._format(fmt, prompt, i))
            rows.append(i)
        for f in failures:
            log.warning("row %d skipped: %s (task %s needs %s)", f.row, f.error, task.name, list(task.input_keys))
        return prompts, rows, failures

    def _format(self, fmt: Callable[[Prompt], FormattedPrompt], prompt: Prompt, i: int) -> FormattedPrompt:
        """The formatted prompt; a formatting function that raises is a bug to fix, not a bad row."""
        try:
            return fmt(prompt)
        except Exception as exc:
            name = getattr(self.prompt_formatting_fn, "__qualname__", "prompt_formatting_fn")
            raise ConfigError(
                f"prompt_formatting_fn {name} raised on row {i}: {type(exc).__name__}: {exc}; "
                "it must turn every Prompt into a string or chat messages"
            ) from exc

    def _outputs_fast(self, prompts: list[FormattedPrompt], raw: list[list[Any]], k: int) -> list[Any] | None:
        """All outputs when every row is good and every generation a parsable str or Generation, else None."""
        if self.json_output:  # each generation's finish reason is checked: the careful path
            return None
        if self.metadata:
            return self._outputs_fast_metadata(prompts, raw, k)
        name, parse = self.model_name, self.task.parse
        outputs: list[Any] = []
        add = outputs.append
        try:
            for prompt, gens in zip(prompts, raw):
                if gens.__class__ is not list or len(gens) != k:
                    return None
                row = []
                for g in gens:
                    kind = g.__class__
                    if kind is Generation:
                        g = g.text
                    elif kind is not str:
                        return None
                    row.append({"model_name": name, "prompt_used": prompt, "raw_output": g, "parsed_output": parse(g)})
                add(row)
        except Exception:
            return None
        return outputs

    def _outputs_fast_metadata(self, prompts: list[FormattedPrompt], raw: list[list[Any]], k: int) -> list[Any] | None:
        """As :meth:`_outputs_fast`, each output with its ``metadata``."""
        name, parse, logprobs = self.model_name, self.task.parse, self.params.logprobs is not None
        outputs: list[Any] = []
        add = outputs.append
        try:
            for prompt, gens in zip(prompts, raw):
                if gens.__class__ is not list or len(gens) != k:
                    return None
                row = []
                for g in gens:
                    kind = g.__class__
                    if kind is Generation:
                        text = g.text
                        meta = {"finish_reason": g.finish_reason, "input_tokens": g.input_tokens}
                        meta["output_tokens"] = g.output_tokens
                        if logprobs:
                            meta["logprobs"] = None if g.logprobs is None else list(g.logprobs)
                    elif kind is str:
                        text, meta = g, _no_metadata(logprobs)
                    else:
                        return None
                    out = {"model_name": name, "prompt_used": prompt, "raw_output": text, "parsed_output": parse(text)}
                    out["metadata"] = meta
                    row.append(out)
                add(row)
        except Exception:
            return None
        return outputs

    def _outputs_each(
        self,
        n: int,
        rows: Sequence[int],
        prompts: list[FormattedPrompt],
        raw: list[list[Any]],
        k: int,
        failures: list[RowFailure],
    ) -> list[Any]:
        """Outputs row by row: empty ones for bad rows, failed generations and parse errors recorded."""
        name, parse = self.model_name, output_parser(self.task, self.params)
        meta, logprobs, json_output = self.metadata, self.params.logprobs is not None, self.json_output
        outputs: list[Any] = [None] * n
        empty: dict[str, Any] = {"model_name": name, "prompt_used": None, "raw_output": None, "parsed_output": None}
        if meta:
            empty["metadata"] = _no_metadata(logprobs)
        for f in failures:
            outputs[f.row] = [{**empty, "metadata": _no_metadata(logprobs)} if meta else dict(empty) for _ in range(k)]
        seen: set[str] = set()
        for j, (i, prompt, gens) in enumerate(zip(rows, prompts, raw)):
            if not isinstance(gens, list) or len(gens) != k:
                got = len(gens) if isinstance(gens, list) else type(gens).__name__
                raise BackendError(
                    f"backend {describe_backend(self.backend)} returned {got} generations for prompt {j}, expected {k}"
                )
            row_out = []
            for g, text in enumerate(gens):
                parsed = None
                if not isinstance(text, (str, Generation, GenerationFailure)):
                    raise BackendError(
                        f"backend {describe_backend(self.backend)} returned a {type(text).__name__} ({text!r:.60}) "
                        f"for prompt {j}, generation {g}: a generation is a str, a Generation or a GenerationFailure"
                    )
                record = text if isinstance(text, Generation) else None
                if record is not None:
                    text = record.text
                if isinstance(text, GenerationFailure):
                    failures.append(RowFailure(i, g, "backend", text.error))
                    if text.error != BATCH_PENDING:  # (batch mode: one per request waiting is no news)
                        log.error("row %d generation %d failed: %s", i, g, text.error)
                    text = None
                else:
                    try:
                        if json_output and record is not None:
                            truncated_json(record.finish_reason)
                        parsed = parse(text)
                    except Exception as exc:
                        msg = f"{type(exc).__name__}: {exc}"
                        failures.append(RowFailure(i, g, "parse", msg))
                        if msg not in seen:
                            seen.add(msg)
                            log.warning("parse failed (row %d, generation %d; logged once): %s", i, g, msg)
                out = {"model_name": name, "prompt_used": prompt, "raw_output": text, "parsed_output": parsed}
                if meta:
                    out["metadata"] = record.metadata(logprobs) if record is not None else _no_metadata(logprobs)
                row_out.append(out)
            outputs[i] = row_out
        return outputs

    def _call_grouped(
        self, prompts: list[FormattedPrompt], groups: list[tuple[GenerationParams, list[int]]], first: int
    ) -> list[list[Any]]:
        """Each group of prompts with its own params (at once when the backend runs calls concurrently)."""

        def call(group: tuple[GenerationParams, list[int]]) -> list[list[Any]]:
            return self._call_backend([prompts[j] for j in group[1]], group[0], first)

        if len(groups) > 1 and self.backend.max_concurrency > 1:
            with ThreadPoolExecutor(len(groups), thread_name_prefix="fnlabel-groups") as pool:
                results = list(pool.map(call, groups))
        else:
            results = [call(g) for g in groups]
        raw: list[list[Any]] = [[] for _ in prompts]
        for (_params, js), got in zip(groups, results):
            for j, gens in zip(js, got):
                raw[j] = gens
        return raw

    def _call_backend(
        self, prompts: list[FormattedPrompt], params: GenerationParams, first: int = 0
    ) -> list[list[Any]]:
        # generation i of the call is generation first+i of each row: the backend seeds (and the cache keys) it as such
        raw = self.backend.generate_from(prompts, params, first) if first else self.backend(prompts, params)
        if not isinstance(raw, list) or len(raw) != len(prompts):
            got = len(raw) if isinstance(raw, list) else type(raw).__name__
            raise BackendError(
                f"backend {describe_backend(self.backend)} returned {got} results for {len(prompts)} prompts"
            )
        return raw


def llm(
    task: Task,
    backend: Backend,
    params: GenerationParams | None = None,
    model_name: str | None = None,
    prompt_format: str | None = None,
    prompt_formatting_fn: Callable[[Prompt], FormattedPrompt] | None = None,
    metadata: bool = False,
) -> LLM:
    """Compose ``task`` and ``backend`` into an LLM callable.

    Args:
        task: what to ask and how to read the answers (see :mod:`fnlabel.tasks`).
        backend: any ``generate(prompts, params) -> list[list[str]]``.
        params: sampling params; ``num_generations`` is set per call.
        model_name: reported in each output; default: the backend's ``model_name``.
        prompt_format: one of :data:`fnlabel.formats.FORMATS`; default: the backend's natural format.
        prompt_formatting_fn: ``fn(Prompt) -> str | messages``; when set, it is used instead of the format.
        metadata: give each output a fifth key, ``metadata``: the finish reason and token counts the
            backend reported (and ``logprobs`` when ``params.logprobs`` asks for them). Off by default,
            so the outputs have exactly distilabel's four keys.

    Examples:
        >>> from fnlabel import llm, tasks, backends, GenerationParams
        >>> gen = llm(tasks.text_generation(), backends.echo(), GenerationParams(max_new_tokens=3))
        >>> out = gen([{"input": "one two three four"}])
        >>> out[0][0]["parsed_output"]["generations"]  # doctest: +ELLIPSIS
        '[0:...] You are a'
    """
    kw: dict[str, Any] = {"params": params or GenerationParams()}
    if model_name is not None:
        kw["model_name"] = model_name
    return LLM(
        task, backend, prompt_format=prompt_format, prompt_formatting_fn=prompt_formatting_fn, metadata=metadata, **kw
    )
