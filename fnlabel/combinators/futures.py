"""Futures as the combinators use them: chunking rows, gathering Futures, and the Future-returning LLM base.

Every LLM-like value offers ``run(inputs, k) -> RunResult``, ``submit(inputs, k) ->
Future[RunResult]``, ``task`` and ``model_name`` (:class:`fnlabel.types.LLMLike`), so
combinators compose in any order.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import attrs

from fnlabel.errors import ConfigError
from fnlabel.llm import LLMBase
from fnlabel.types import Input, LLMOutput, RowFailure, RunResult

__all__ = ["FutureLLM", "gather", "chunks", "merge_chunks"]

T = TypeVar("T")


def chunks(items: Sequence[T], n: int) -> list[tuple[int, Sequence[T]]]:
    """Split ``items`` into at most ``n`` contiguous, near-equal chunks with their offsets."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(min(n, len(items))):
        end = start + size + (i < extra)
        out.append((start, items[start:end]))
        start = end
    return out


def gather(futures: Sequence[Future[Any]], combine: Callable[[list[Any]], T]) -> Future[T]:
    """One Future of ``combine(results)``; it fails as soon as any input Future fails."""
    done: Future[T] = Future()
    results: list[Any] = [None] * len(futures)
    left = [len(futures)]
    lock = threading.Lock()

    def settle(i: int, fut: Future[Any]) -> None:
        exc = fut.exception() if not fut.cancelled() else ConfigError("a chunk was cancelled")
        with lock:
            if done.done():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                results[i] = fut.result()
                left[0] -= 1
                if left[0]:
                    return
        if exc is not None:
            # outside the lock: cancel() runs this callback again in this thread for a pending future
            for other in futures:
                other.cancel()
            return
        try:
            done.set_result(combine(results))
        except Exception as err:  # a broken combine must fail the Future, not hang it
            done.set_exception(err)

    if not futures:
        done.set_result(combine([]))
    for i, fut in enumerate(futures):
        fut.add_done_callback(functools.partial(settle, i))
    return done


def merge_chunks(parts: list[tuple[int, RunResult]]) -> RunResult:
    """Concatenate chunk results, shifting each chunk's failure rows by its offset."""
    outputs: list[list[LLMOutput]] = []
    failures: list[RowFailure] = []
    for offset, res in parts:
        outputs.extend(res.outputs)
        failures.extend(attrs.evolve(f, row=f.row + offset) for f in res.failures)
    return RunResult(outputs, tuple(failures))


class FutureLLM(LLMBase):
    """What the LLMs whose calls return Futures share (:class:`~fnlabel.combinators.threads.Threaded`,
    :class:`~fnlabel.combinators.process.InProcess`).

    A subclass defines ``submit(inputs, k, first_generation=0) -> Future[RunResult]`` and ``close()``;
    calling it returns a Future of the nested outputs list, ``run`` blocks on ``submit``.
    """

    __slots__ = ()

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> Future[list[list[LLMOutput]]]:
        """A Future of the nested outputs list (one list per input, ``num_generations`` each)."""
        return gather([self.submit(inputs, num_generations)], lambda rs: rs[0].outputs)
