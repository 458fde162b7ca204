"""A deterministic fake backend for tests, docs and benchmarks.

Its output depends on the prompt, the params and the generation index, so a
test can see that each of them reached the backend. It behaves like a tiny
model whose tokens are words: ``max_new_tokens`` bounds the number of words
(``finish_reason`` is then ``"length"``), ``stop`` strings cut the text, each
generation reports its input and output words as tokens, and ``logprobs`` are
given (0.0 for each word). Options script latency and failures, so combinators
and retries can be tested without a model. With a structured output it answers
in kind, so the pure parts of structured runs can be tested too: one of the
``choice`` strings, or the smallest JSON value a ``json_schema`` accepts (as
far as :func:`schema_instance` reads schemas).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from fnlabel.backends.base import BackendBase
from fnlabel.errors import BackendError
from fnlabel.formats import check_format
from fnlabel.types import FormattedPrompt, Generation, GenerationFailure, GenerationParams, RawGeneration
from fnlabel.validators import number, text

__all__ = ["EchoConfig", "Echo", "echo", "prompt_text"]


def _strings(value: object) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]


def prompt_text(prompt: FormattedPrompt) -> str:
    """The text of a prompt: the string itself, or ``role: content`` lines of chat messages."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


@attrs.frozen
class EchoConfig:
    """Options of the fake backend (recipe ``kind = "echo"``).

    Attributes:
        model_name: reported in every ``LLMOutput``.
        latency: seconds slept per call, to mimic a slow model.
        latency_per_prompt: seconds slept per prompt in a call.
        fail_on: a prompt containing any of these substrings gets a
            :class:`GenerationFailure` for each of its generations.
        raise_on: a call with a prompt containing any of these substrings raises
            :class:`BackendError` (the whole call fails).
        crash_on: a call with a prompt containing any of these substrings ends its own
            process at once (``os._exit(70)``), as a crash inside a native library would:
            for testing what a run does with a row that kills its worker.
        prompt_format: the backend's natural prompt format.
        call_log: a file to which one line per produced generation is appended,
            so tests can count backend work, even across processes.
    """

    model_name: str = attrs.field(default="echo", validator=text())
    latency: float = attrs.field(default=0.0, validator=number(0.0))
    latency_per_prompt: float = attrs.field(default=0.0, validator=number(0.0))
    fail_on: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    raise_on: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    crash_on: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    prompt_format: str = attrs.field(default="default", validator=lambda _i, _a, v: check_format(v))
    call_log: str | None = attrs.field(
        default=None,
        converter=lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v,
        validator=text(optional=True),
    )

    kind: ClassVar[str] = "echo"
    #: fields that do not change a successful output: left out of the cache identity
    cache_ignore: ClassVar[tuple[str, ...]] = (
        "latency",
        "latency_per_prompt",
        "fail_on",
        "raise_on",
        "crash_on",
        "call_log",
    )

    def build(self) -> Echo:
        """The backend callable for this config."""
        return Echo(self)


@attrs.frozen
class Echo(BackendBase):
    """The backend callable itself: ``Echo(config)(prompts, params)``."""

    config: EchoConfig = EchoConfig()
    supports_logprobs = True
    structured_outputs = ("json_schema", "choice")

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def prompt_format(self) -> str:
        return self.config.prompt_format

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        cfg = self.config
        texts = [prompt_text(p) for p in prompts]
        if any(s in prompt for s in cfg.crash_on for prompt in texts):
            os._exit(70)  # (crash_on) no cleanup, no exception: the process is gone
        for row, prompt in enumerate(texts):
            hit = next((s for s in cfg.raise_on if s in prompt), None)
            if hit is not None:
                raise BackendError(f"echo: prompt {row} contains {hit!r} (raise_on)")
        delay = cfg.latency + cfg.latency_per_prompt * len(prompts)
        if delay:
            time.sleep(delay)
        tag = _params_tag(params)
        out: list[list[RawGeneration]] = [
            [_generation(t, params, i, tag) for i in range(params.num_generations)] for t in texts
        ]
        for row, prompt in enumerate(texts):
            hit = next((s for s in cfg.fail_on if s in prompt), None)
            if hit is not None:
                out[row] = [GenerationFailure(f"echo: prompt contains {hit!r} (fail_on)")] * len(out[row])
        if cfg.call_log:
            produced = sum(isinstance(g, Generation) for gens in out for g in gens)
            with open(cfg.call_log, "a", encoding="utf-8") as fh:
                fh.write("g\n" * produced)
                fh.flush()
                os.fsync(fh.fileno())
        return out


def _params_tag(params: GenerationParams) -> str:
    # everything but num_generations (asking for more generations must not change earlier ones) and
    # logprobs (they do not change the text)
    fields = attrs.fields(type(params))
    key = repr((*(getattr(params, f.name) for f in fields[: fields.index(fields.num_generations)]), 1))
    return hashlib.blake2b(key.encode(), digest_size=3).hexdigest()


def _generation(text: str, params: GenerationParams, index: int, tag: str) -> Generation:
    words = text.split()
    constraint = params.structured_output
    if constraint is not None:
        if constraint.choice is not None:
            out = constraint.choice[(index + len(words)) % len(constraint.choice)]
        else:
            out = json.dumps(schema_instance(constraint.schema()))
        return Generation(out, "stop", len(words), len(out.split()))
    out = generation(text, params, index, tag)
    said = out.split("] ", 1)[1].split() if "] " in out else []
    logprobs = None
    if params.logprobs is not None:
        top = params.logprobs
        logprobs = tuple(
            {"token": w, "logprob": 0.0, "top_logprobs": [{"token": w, "logprob": 0.0}][:top]} for w in said
        )
    return Generation(
        out,
        finish_reason="length" if len(words) > params.max_new_tokens and len(said) == params.max_new_tokens else "stop",
        input_tokens=len(words),
        output_tokens=len(said),
        logprobs=logprobs,
    )


def generation(text: str, params: GenerationParams, index: int, tag: str | None = None) -> str:
    """Generation ``index`` of the echo backend for ``text``: pure and deterministic."""
    tag = tag or _params_tag(params)
    body = " ".join(text.split()[: params.max_new_tokens])
    out = f"[{index}:{tag}] {body}"
    for s in params.stop:
        cut = out.find(s)
        if cut >= 0:
            out = out[:cut]
    return out


def echo(**options: object) -> Echo:
    """Make the fake backend; ``options`` are :class:`EchoConfig` fields.

    Examples:
        >>> from fnlabel import GenerationParams
        >>> generate = echo()
        >>> [[g.text for g in row] for row in generate(["hello world"], GenerationParams(num_generations=2))]
        ... # doctest: +ELLIPSIS
        [['[0:...] hello world', '[1:...] hello world']]
        >>> generate(["one two three"], GenerationParams(max_new_tokens=2))[0][0].finish_reason
        'length'
    """
    return Echo(EchoConfig(**options))  # type: ignore[arg-type]


def schema_instance(schema: Any) -> Any:
    """The smallest value a (simple) JSON schema accepts: required properties, minimums, first options.

    Examples:
        >>> schema_instance({"type": "object", "required": ["n", "tag"],
        ...                  "properties": {"n": {"type": "integer", "minimum": 1}, "tag": {"enum": ["a", "b"]}}})
        {'n': 1, 'tag': 'a'}
    """
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_instance(schema[key][0])
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_instance(props.get(name, {})) for name in schema.get("required", list(props))}
    if kind == "array":
        return [schema_instance(schema.get("items", {})) for _ in range(int(schema.get("minItems", 0)))]
    if kind in ("integer", "number"):
        if "minimum" in schema:
            low = schema["minimum"]
        else:
            low = schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else 0
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "x" * int(schema.get("minLength", 1))
