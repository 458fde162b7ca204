"""The logits processors of the transformers backend: penalties, seeded sampling, logprobs, grammars.

Each is called by ``model.generate`` with ``(input_ids, scores)`` for every step and returns
the scores to use. fnlabel's own processors do what transformers' warpers cannot do per
sequence (OpenAI's additive penalties, a seed per sequence) or do not do at all (recording
the raw logprobs); :func:`grammar_processor` wraps xgrammar's for structured output.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from fnlabel.backends.grammar import gbnf
from fnlabel.backends.usage import token_entry
from fnlabel.errors import ConfigError
from fnlabel.structured import StructuredOutput

__all__ = ["OpenAIPenalties", "SeededSampler", "LogprobRecorder", "grammar_processor"]


class OpenAIPenalties:
    """OpenAI's penalties: ``logit -= frequency * count + presence * (count > 0)`` over generated tokens."""

    def __init__(self, frequency: float, presence: float, prompt_len: int) -> None:
        self.frequency, self.presence, self.prompt_len = frequency, presence, prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        generated = input_ids[:, self.prompt_len :]
        if generated.shape[1] == 0:
            return scores
        counts = scores.new_zeros(scores.shape).scatter_add_(1, generated, scores.new_ones(generated.shape))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class SeededSampler:
    """Draws each row's next token with that row's own generator; returns a one-hot score row.

    The generate loop's own sampling then has a single choice, so each sequence
    depends on its seed alone, not on the batch it shares or the global RNG. One
    uniform per row (from its generator) picks the token by inverse CDF, vectorized
    over the batch.
    """

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = seeds
        self.generators: list[Any] | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        cdf = torch.softmax(scores.float(), dim=-1).cumsum_(dim=-1)
        # 1 - U is in (0, 1]: the pick is the first token whose cdf reaches u * total, never a zero-probability one
        u = 1.0 - torch.cat([torch.rand(1, generator=g, device=scores.device) for g in self.generators])
        picks = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp_(max=scores.shape[-1] - 1)
        return torch.full_like(scores, -float("inf")).scatter_(1, picks, 0.0)


class LogprobRecorder:
    """A logits processor (first in the list: it sees the raw logits) that keeps each step's top ``n``.

    The logprob of the token chosen at a step is read at the next step (the token is then
    the last input id), so only one step's full distribution is held at a time.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.previous: Any = None
        self.chosen: list[Any] = []  # per step: each row's chosen token's logprob
        self.top: list[tuple[Any, Any]] = []  # per step: (values, ids) of the top n

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.previous is not None:
            self.chosen.append(self.previous.gather(1, input_ids[:, -1:])[:, 0].cpu())
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        values, ids = self.previous.topk(self.n, dim=-1)
        self.top.append((values.cpu(), ids.cpu()))
        return scores

    def entries(self, tok: Any, new: Any, lengths: list[int]) -> list[tuple[dict[str, Any], ...]]:
        """Each row's logprobs (its first ``lengths[row]`` tokens) in fnlabel's shape; ``new``: the new token ids."""
        last = len(self.top) - 1
        if self.previous is not None and len(self.chosen) == last:  # the last step's token is in the output only
            self.chosen.append(self.previous.gather(1, new[:, last : last + 1].to(self.previous.device))[:, 0].cpu())
        self.previous = None
        out = []
        for r, k in enumerate(lengths):
            ids = new[r, :k].tolist()
            top = [(self.top[t][0][r].tolist(), self.top[t][1][r].tolist()) for t in range(k)]
            names = tok.batch_decode([[i] for i in ids] + [[i] for _, top_ids in top for i in top_ids])
            tops = [names[k + t * self.n : k + (t + 1) * self.n] for t in range(k)]
            out.append(
                tuple(
                    token_entry(names[t], self.chosen[t][r].item(), zip(tops[t], top[t][0]), self.n) for t in range(k)
                )
            )
        return out


#: a grammar compiler per tokenizer (freed with it)
_COMPILERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def grammar_processor(tokenizer: Any, vocab_size: int, constraint: StructuredOutput) -> Any:
    """An xgrammar logits processor for one ``generate`` call (its matchers hold that call's state).

    The grammar is compiled once per model and constraint (xgrammar's compiler caches it).
    """
    try:
        import xgrammar as xgr
        from xgrammar.contrib.hf import LogitsProcessor
    except ImportError as exc:
        raise ConfigError(
            "structured output on transformers needs xgrammar: pip install 'fnlabel[transformers]'"
        ) from exc
    compiler = _COMPILERS.get(tokenizer)
    if compiler is None:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        compiler = _COMPILERS[tokenizer] = xgr.GrammarCompiler(info)
    if constraint.json_schema is not None:
        compiled = compiler.compile_json_schema(json.dumps(constraint.schema()))
    elif constraint.regex is not None:
        compiled = compiler.compile_regex(constraint.regex)
    else:
        compiled = compiler.compile_grammar(gbnf(constraint))  # choices: GBNF is also xgrammar's EBNF
    return LogitsProcessor(compiled)
