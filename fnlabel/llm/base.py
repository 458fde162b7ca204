"""What every LLM-like value shares: the defaults of the contract, the one thread pool, call checks.

:class:`LLMBase` gives any LLM-like class the members of :class:`fnlabel.types.LLMLike` it
does not define itself (a class with ``task``, ``model_name`` and ``run`` gets ``submit``,
``__call__``, ``generate``, ``close`` and the context manager). :func:`map_llms` is how the
combinators reach the plain LLMs inside one another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fnlabel.errors import ConfigError, InputError
from fnlabel.types import Input, RunResult
from fnlabel.validators import MAX_NUM_GENERATIONS, check_int

__all__ = ["LLMBase", "Unreachable", "as_rows", "check_call", "map_llms", "max_concurrency", "shared_pool"]


def as_rows(inputs: Sequence[Input]) -> Sequence[Input]:
    """``inputs`` as a list or tuple of rows; a single dict or a string is an :class:`InputError`."""
    if isinstance(inputs, (list, tuple)):
        return inputs
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Iterable):
        # (iterating a dict or a string would make each key or char a "row")
        raise InputError(f"inputs must be a list of dicts, got a {type(inputs).__name__}; for one input pass [row]")
    return list(inputs)


def check_call(num_generations: object, first_generation: object = 0) -> tuple[int, int]:
    """``(num_generations, first_generation)`` of a call, checked (ConfigError naming the limit)."""
    k = check_int(num_generations, "num_generations", low=1, high=MAX_NUM_GENERATIONS)
    return k, check_int(first_generation, "first_generation", low=0)


def max_concurrency(obj: object) -> int:
    """How many calls of ``obj`` (an LLM-like value or a backend) are worth running at once.

    It is ``obj.max_concurrency`` (the HTTP backends' requests in flight, and the
    combinators that pass it on), else 1: a local model serves one call at a time.
    ``fnlabel run`` keeps that many rows' requests going across batches.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> max_concurrency(llm(tasks.text_generation(), backends.echo()))
        1
    """
    try:
        value = getattr(obj, "max_concurrency", 1)
    except Exception:  # e.g. an in_process child that failed to load: its calls will say why
        return 1
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def shared_pool() -> ThreadPoolExecutor:
    """The one thread pool that runs ``submit`` of the LLM-likes that compute in their caller (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fnlabel")
        return _pool


class Unreachable(ConfigError):
    """``map_inner`` of an LLM-like whose LLM cannot be changed from here (an ``in_process`` child's)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def map_llms(llm: Any, change: Callable[[Any], Any], action: str, fix: str) -> Any:
    """``llm.map_inner(change)``; an LLM inside that cannot be reached is a ConfigError saying ``cannot {action} ...: {fix}``."""
    try:
        return llm.map_inner(change)
    except Unreachable as exc:
        raise ConfigError(f"cannot {action} {exc.kind}: {fix}") from None


class LLMBase:
    """Defaults of :class:`fnlabel.types.LLMLike` for a class that defines ``task``, ``model_name``
    and ``run`` or ``submit`` (each default is written in terms of the other)."""

    __slots__ = ()

    @property
    def max_concurrency(self) -> int:
        return 1

    def run(self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0) -> RunResult:
        """The outputs and the failures of the call (blocks)."""
        return self.submit(inputs, num_generations, first_generation=first_generation).result()

    def submit(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> Future[RunResult]:
        """:meth:`run` in a background thread (:func:`shared_pool`); a Future of its :class:`RunResult`."""
        rows = list(as_rows(inputs))
        return shared_pool().submit(self.run, rows, num_generations, first_generation=first_generation)

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> Any:
        """``num_generations`` outputs for each input (one list per input)."""
        return self.run(inputs, num_generations).outputs

    def generate(self, inputs: Sequence[Input], num_generations: int = 1) -> Any:
        """The same as calling the LLM."""
        return self(inputs, num_generations)

    def map_inner(self, change: Callable[[Any], Any]) -> Any:
        """The same LLM-like with ``change`` applied to every plain LLM inside."""
        raise Unreachable(type(self).__name__, "no plain LLM inside can be reached")

    def close(self) -> None:
        """Release what the LLM holds (nothing by default)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
