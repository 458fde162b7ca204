"""transformers backend: batched ``model.generate`` with left padding.

Prompts are tokenized one by one and left-padded into batches of ``batch_size``
prompts, so every prompt's last token sits next to its first new token and a
batched greedy output equals the unbatched one. Each batch is one ``generate``
call with ``num_return_sequences=num_generations``; only the new tokens are
decoded. Sampling runs through fnlabel's own logits processors, so every
general param is honoured (see docs/backends/transformers.md):

* temperature, top_k, top_p: transformers' own warpers; ``temperature == 0`` is greedy;
* frequency/presence penalty: OpenAI's additive penalties over the generated tokens;
* seed: each sequence samples with its own ``torch.Generator`` seeded with
  :func:`fnlabel.seeds.generation_seed` ``(seed, i)`` for generation ``i``;
* stop: ``stop_strings`` ends a sequence early; the text is cut before the stop string.

Each generation reports its prompt's tokens, the tokens it generated (up to, not
counting, the end-of-sequence token) and ``finish_reason``: ``"length"`` when
``max_new_tokens`` ran out first, else ``"stop"``. Logprobs come from the model's raw
logits (before temperature and penalties), recorded one step at a time.

The library is imported inside :meth:`TransformersConfig.build` (as ``hf``): this
module's name shadows it only within ``fnlabel.backends``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar

import attrs

from fnlabel.backends.base import BackendBase, check_capabilities
from fnlabel.backends.hf_processors import LogprobRecorder, OpenAIPenalties, SeededSampler, grammar_processor
from fnlabel.backends.local import ModelCache, cut_at_stop, is_chat
from fnlabel.backends.models import EMBEDDED_ALIASES, embedded_gguf
from fnlabel.errors import BackendError, ConfigError
from fnlabel.seeds import generation_seed, random_seed
from fnlabel.types import FormattedPrompt, Generation, GenerationParams, RawGeneration
from fnlabel.validators import check_text, integer, one_of

__all__ = ["TransformersConfig", "Transformers", "transformers"]

_MODELS = ModelCache()
DTYPES = ("auto", "float32", "float16", "bfloat16")


def _model_str(_inst: Any, _attr: Any, value: Any) -> None:
    check_text(value, "TransformersConfig.model (an HF folder, a hub id or 'smollm2')")


def _device(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, str) or not (value in ("auto", "cpu", "mps") or value.split(":")[0] == "cuda"):
        raise ConfigError(f"TransformersConfig.device={value!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


@attrs.frozen
class TransformersConfig:
    """Options of the transformers backend (recipe ``kind = "transformers"``).

    Attributes:
        model: an HF model folder or hub id, or ``"smollm2"`` (the embedded GGUF, dequantized).
        gguf_file: a GGUF file inside ``model`` to load instead of safetensors.
        dtype: ``"auto"`` (the checkpoint's dtype), ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        device: ``"auto"`` (``cuda`` when present, else ``cpu``), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
        batch_size: prompts per ``generate`` call (each brings ``num_generations`` sequences).
        trust_remote_code: passed to ``from_pretrained``.
        use_chat_template: render chat messages with the tokenizer's chat template (natural
            format ``openai``); when False the natural format is ``default`` (plain strings).
    """

    model: str = attrs.field(default="smollm2", validator=_model_str)
    gguf_file: str | None = None
    dtype: str = attrs.field(default="auto", validator=one_of(*DTYPES))
    device: str = attrs.field(default="auto", validator=_device)
    batch_size: int = attrs.field(default=16, validator=integer(1))
    trust_remote_code: bool = False
    use_chat_template: bool = True

    kind: ClassVar[str] = "transformers"

    def source(self) -> tuple[str, str | None]:
        """``(folder or hub id, gguf file or None)`` to load from; resolves the ``smollm2`` alias."""
        if self.model in EMBEDDED_ALIASES:
            if self.gguf_file is not None:
                raise ConfigError(f"model={self.model!r} is an alias of the embedded GGUF: leave gguf_file unset")
            path = embedded_gguf()
            return str(path.parent), path.name
        return self.model, self.gguf_file

    def preflight(self, params: GenerationParams) -> list[str]:
        """What would stop this backend, knowable without loading the model: the libraries, the model's place."""
        needed = ("torch", "transformers") + (("xgrammar",) if params.structured_output is not None else ())
        problems = [
            f"the transformers backend needs {lib}: pip install 'fnlabel[transformers]'"
            for lib in needed
            if find_spec(lib) is None
        ]
        try:
            check_capabilities("transformers", Transformers.supports_logprobs, Transformers.structured_outputs, params)
            source, gguf_file = self.source()
        except ConfigError as exc:
            return [*problems, str(exc)]
        local = Path(source).expanduser()
        if gguf_file is not None and local.is_dir() and not (local / gguf_file).is_file():
            problems.append(f"TransformersConfig.gguf_file {gguf_file!r} is not a file in {source}")
        if not local.exists() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
            problems.append(f"TransformersConfig.model {source!r}: no such folder (and not a hub id like org/name)")
        return problems

    def build(self) -> Transformers:
        """Load the model and tokenizer (once per config) and return the backend callable."""
        backend = Transformers(self)
        backend.loaded()
        return backend


@attrs.frozen
class _Loaded:
    model: Any
    tokenizer: Any
    device: Any
    hf: Any  # the transformers module
    torch: Any


def _load(config: TransformersConfig) -> _Loaded:
    try:
        import torch
        import transformers as hf
    except ImportError as exc:
        raise ConfigError("the transformers backend needs torch: pip install 'fnlabel[transformers]'") from exc
    source, gguf_file = config.source()
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kw: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    if gguf_file is not None:
        kw["gguf_file"] = gguf_file
    try:
        tokenizer = hf.AutoTokenizer.from_pretrained(source, **kw)
        dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
        model: Any = hf.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kw)
    except (OSError, ValueError, ImportError) as exc:
        what = f"{source}/{gguf_file}" if gguf_file else source
        raise ConfigError(f"transformers could not load {what!r}: {exc}") from exc
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return _Loaded(model, tokenizer, torch.device(device), hf, torch)


@attrs.frozen
class Transformers(BackendBase):
    """The backend callable: ``Transformers(config)(prompts, params)``. Pickles as its config."""

    config: TransformersConfig = TransformersConfig()
    supports_logprobs = True
    #: an xgrammar logits processor constrains each sequence (built per generate call)
    structured_outputs = ("json_schema", "choice", "regex")

    def loaded(self) -> _Loaded:
        """The model, tokenizer and device (loaded on first use, then shared by equal configs)."""
        return _MODELS.get(self.config, lambda: _load(self.config))[0]

    @property
    def model_name(self) -> str:
        """The hub id or folder, or the GGUF file's stem when loading a GGUF."""
        source, gguf_file = self.config.source()
        return Path(gguf_file).stem if gguf_file else source

    @property
    def prompt_format(self) -> str:
        if self.config.use_chat_template and self.loaded().tokenizer.chat_template:
            return "openai"
        return "default"

    def close(self) -> None:
        """Free the model; a later call loads it again."""
        _MODELS.pop(self.config)

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        loaded, lock = _MODELS.get(self.config, lambda: _load(self.config))
        ids = [self._tokenize(loaded, p, j) for j, p in enumerate(prompts)]
        # batch prompts of similar length together (less padding); results go back in input order
        order = sorted(range(len(ids)), key=lambda j: len(ids[j]))
        size = self.config.batch_size
        out: list[list[RawGeneration]] = [[] for _ in prompts]
        with lock:
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                texts = _generate_batch(loaded, [ids[j] for j in batch], params)
                for j, gens in zip(batch, texts):
                    out[j] = list(gens)
        return out

    def _tokenize(self, loaded: _Loaded, prompt: FormattedPrompt, index: int) -> list[int]:
        tok = loaded.tokenizer
        if not is_chat(prompt, index) and isinstance(prompt, str):  # (is_chat is False only for a str)
            # a string that starts with the BOS text already (the llama2 format's "<s>", a rendered
            # chat template) must not get a second BOS from a tokenizer that adds one (Llama, Mistral)
            bos = tok.bos_token
            return tok(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"]
        if not (self.config.use_chat_template and tok.chat_template):
            why = (
                "use_chat_template=False" if not self.config.use_chat_template else "the tokenizer has no chat template"
            )
            raise BackendError(
                f"prompt {index} is chat messages but {why}; use a string prompt_format (e.g. 'chatml') "
                "or use_chat_template=True with a chat model"
            )
        text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        # the template already wrote the special tokens (BOS, turn markers)
        return tok(text, add_special_tokens=False)["input_ids"]


def _generate_batch(loaded: _Loaded, ids: list[list[int]], params: GenerationParams) -> list[list[Generation]]:
    torch, tok = loaded.torch, loaded.tokenizer
    width = max(len(x) for x in ids)
    pad = tok.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=loaded.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=loaded.device)
    greedy = params.temperature == 0
    n = 1 if greedy else params.num_generations  # greedy sequences are identical: make one, copy it
    recorder = None if params.logprobs is None else LogprobRecorder(params.logprobs)
    processors = _processors(loaded, params, width, len(ids) * n)
    if params.structured_output is not None:  # masks before temperature, top-k, top-p and sampling see the scores
        penalties = 1 if params.frequency_penalty or params.presence_penalty else 0
        processors.insert(penalties, grammar_processor(tok, loaded.model.config.vocab_size, params.structured_output))
    kw: dict[str, Any] = {
        "attention_mask": mask,
        "max_new_tokens": params.max_new_tokens,
        "pad_token_id": pad,
        "num_return_sequences": n,
        "logits_processor": loaded.hf.LogitsProcessorList(processors if recorder is None else [recorder, *processors]),
    }
    if greedy:
        kw["do_sample"] = False
    else:
        # the model's own warpers are switched off: fnlabel's processors do temperature, top-k, top-p, sampling
        kw.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0)
    if params.stop:
        kw.update(stop_strings=list(params.stop), tokenizer=tok)
    try:
        with torch.inference_mode():
            seqs = loaded.model.generate(input_ids, repetition_penalty=1.0, **kw)
    except Exception as exc:
        raise BackendError(f"transformers generate failed on a batch of {len(ids)} prompts: {exc}") from exc
    new = seqs[:, width:]
    ends = _end_ids(loaded)
    rows = new.tolist()
    lengths = [next((i for i, t in enumerate(row) if t in ends), len(row)) for row in rows]
    texts = tok.batch_decode([row[:k] for row, k in zip(rows, lengths)], skip_special_tokens=True)
    logprobs = recorder.entries(tok, new, lengths) if recorder is not None else [None] * len(rows)
    gens = []
    for r, (text, k) in enumerate(zip(texts, lengths)):
        cut = cut_at_stop(text, params.stop) if params.stop else text
        reason = "length" if k == params.max_new_tokens and cut == text else "stop"
        gens.append(Generation(cut, reason, len(ids[r // n]), k, logprobs[r]))
    copies = params.num_generations // n
    return [gens[j * n : (j + 1) * n] * copies for j in range(len(ids))]


def _end_ids(loaded: _Loaded) -> set[int]:
    """Token ids that end a sequence: the model's EOS ids and the pad id (what follows an ended sequence)."""
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    ids.update(i for i in (loaded.tokenizer.eos_token_id, loaded.tokenizer.pad_token_id) if i is not None)
    return ids


def _processors(loaded: _Loaded, params: GenerationParams, prompt_len: int, rows: int) -> list[Any]:
    hf, procs = loaded.hf, list[Any]()
    if params.frequency_penalty or params.presence_penalty:
        procs.append(OpenAIPenalties(params.frequency_penalty, params.presence_penalty, prompt_len))
    if params.temperature == 0:
        return procs
    if params.temperature != 1.0:
        procs.append(hf.TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        procs.append(hf.TopKLogitsWarper(top_k=params.top_k))
    if params.top_p < 1.0:
        procs.append(hf.TopPLogitsWarper(top_p=params.top_p))
    k = params.num_generations
    if params.seed is None:
        seeds = [random_seed() for _ in range(rows)]
    else:  # rows are prompt-major: row r is generation r % k of its prompt
        seeds = [generation_seed(params.seed, r % k) for r in range(rows)]
    procs.append(SeededSampler(seeds))
    return procs


def transformers(**options: Any) -> Transformers:
    """Make the transformers backend; ``options`` are :class:`TransformersConfig` fields.

    Examples:
        >>> from fnlabel import GenerationParams
        >>> generate = transformers(model="smollm2", batch_size=4)
        >>> out = generate(["Hi", "The sky is"], GenerationParams(max_new_tokens=3, temperature=0))
        >>> [len(gens) for gens in out], [g.output_tokens for gens in out for g in gens]
        ([1, 1], [3, 3])
    """
    return TransformersConfig(**options).build()
