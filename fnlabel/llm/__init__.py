"""The LLM: a task, a backend and params composed into one callable (``compose``), and what every
LLM-like value shares (``base``: the contract's defaults, the one thread pool, call checks)."""

from fnlabel.llm.base import LLMBase, Unreachable, as_rows, check_call, map_llms, max_concurrency, shared_pool
from fnlabel.llm.compose import LLM, llm

__all__ = [
    "LLM",
    "LLMBase",
    "Unreachable",
    "llm",
    "as_rows",
    "check_call",
    "map_llms",
    "max_concurrency",
    "shared_pool",
]
