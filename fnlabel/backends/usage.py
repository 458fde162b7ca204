"""What the backends share to fill :class:`fnlabel.types.Generation`: usage splits, finish reasons, logprobs.

Logprobs come in one shape whatever the backend: one
``{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}`` per output token
(OpenAI's chat shape without ``bytes``), ``top_logprobs`` sorted most likely first and
holding at most ``GenerationParams.logprobs`` entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["split_exact", "finish_reason", "token_entry", "chat_logprobs", "completion_logprobs", "int_or_none"]

#: servers' own words for why a generation ended, in OpenAI's (TGI: eos_token, stop_sequence)
_REASONS = {"eos_token": "stop", "stop_sequence": "stop", "eos": "stop", "max_tokens": "length"}


def finish_reason(value: Any) -> str | None:
    """``"stop"``, ``"length"`` or the server's own word (None when there is none).

    Examples:
        >>> finish_reason("eos_token"), finish_reason("length"), finish_reason(None)
        ('stop', 'length', None)
    """
    if value is None or value == "":
        return None
    word = str(value)
    return _REASONS.get(word, word)


def int_or_none(value: Any) -> int | None:
    """A token count as an int (None when missing or not a whole number >= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        return None
    return int(value)


def split_exact(total: int | None, weights: Sequence[float]) -> list[int | None]:
    """``total`` split in proportion to ``weights`` into whole parts that add up to ``total`` exactly.

    A request of ``n`` choices reports one usage for all of them; each choice gets its share
    (largest remainders first), so that a run's totals equal what the server reported.

    Examples:
        >>> split_exact(10, [1, 1, 1])
        [4, 3, 3]
        >>> split_exact(7, [0, 3, 1]), split_exact(None, [1, 2])
        ([0, 5, 2], [None, None])
    """
    if total is None:
        return [None] * len(weights)
    if len(weights) == 1:  # (one choice: the whole of it)
        return [total]
    if not weights:
        return []
    weight_sum = float(sum(weights))
    shares = [total * w / weight_sum for w in weights] if weight_sum > 0 else [total / len(weights)] * len(weights)
    parts = [int(s) for s in shares]
    by_remainder = sorted(range(len(parts)), key=lambda i: (parts[i] - shares[i], i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return list(parts)


def token_entry(token: Any, logprob: Any, top: Iterable[tuple[Any, Any]], n: int) -> dict[str, Any]:
    """One output token's logprobs in fnlabel's shape (``top``: ``(token, logprob)`` pairs, any order)."""
    ranked = sorted(((str(t), float(lp)) for t, lp in top), key=lambda pair: -pair[1])[:n]
    return {
        "token": str(token),
        "logprob": float(logprob),
        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in ranked],
    }


def chat_logprobs(content: Any, n: int) -> tuple[dict[str, Any], ...] | None:
    """OpenAI chat ``choice.logprobs.content`` (a list of token entries) in fnlabel's shape."""
    if not isinstance(content, list):
        return None
    return tuple(
        token_entry(
            e.get("token"),
            e.get("logprob"),
            ((t.get("token"), t.get("logprob")) for t in e.get("top_logprobs") or ()),
            n,
        )
        for e in content
        if isinstance(e, Mapping) and e.get("logprob") is not None
    )


def completion_logprobs(logprobs: Any, n: int) -> tuple[dict[str, Any], ...] | None:
    """Legacy completions ``choice.logprobs`` (``tokens``, ``token_logprobs``, ``top_logprobs``) in fnlabel's shape."""
    if not isinstance(logprobs, Mapping):
        return None
    tokens, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    return tuple(
        token_entry(token, value, (top or {}).items(), n)
        for token, value, top in zip(tokens, values, tops)
        if value is not None
    )
