"""Helpers for the backend tests that need a variant of the embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnlabel.types import Generation


def bos_adding_hf_folder(src: Path, dest: Path) -> Path:
    """``src`` (an HF model folder) in ``dest``, with a tokenizer.json that adds BOS as Llama's does.

    The embedded model's BOS is ``<|im_start|>``, which every chatml prompt starts with: a
    backend that adds it again to such a prompt shows the double-BOS bug. The other files are
    symlinked.
    """
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    for f in src.iterdir():
        if f.name != "tokenizer.json":
            (dest / f.name).symlink_to(f)
    fast = Tokenizer.from_file(str(src / "tokenizer.json"))
    bos = ("<|im_start|>", fast.token_to_id("<|im_start|>"))
    fast.post_processor = TemplateProcessing(single=f"{bos[0]} $A", pair=f"{bos[0]} $A $B", special_tokens=[bos])
    fast.save(str(dest / "tokenizer.json"))
    return dest


def assert_logprobs(gen: Generation, n: int) -> None:
    """One entry per output token, each with its ``n`` most likely tokens, most likely first; greedy picks the top."""
    assert gen.logprobs is not None and len(gen.logprobs) == gen.output_tokens > 0
    assert "".join(e["token"] for e in gen.logprobs) == gen.text
    for entry in gen.logprobs:
        top = [t["logprob"] for t in entry["top_logprobs"]]
        assert len(top) == n and top == sorted(top, reverse=True), entry
        assert entry["logprob"] <= 0
        assert entry["top_logprobs"][0]["token"] == entry["token"], "greedy: the chosen token is the most likely"
        assert entry["logprob"] == pytest.approx(top[0])
