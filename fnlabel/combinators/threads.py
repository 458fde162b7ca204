"""``threaded``: an LLM run over a pool of threads; calls return Futures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from fnlabel.combinators.futures import FutureLLM, chunks, gather, merge_chunks
from fnlabel.errors import BackendError, ConfigError
from fnlabel.llm import as_rows, check_call
from fnlabel.types import Input, LLMLike, RunResult, Task, is_llm_like
from fnlabel.validators import check_int

__all__ = ["threaded", "Threaded"]


@attrs.define(eq=False)
class Threaded(FutureLLM):
    """An LLM run over ``num_threads`` threads; calls return Futures. Make one with :func:`threaded`."""

    llm: LLMLike
    num_threads: int
    _executor: ThreadPoolExecutor | None = attrs.field(default=None, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _closed: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def task(self) -> Task:
        return self.llm.task

    @property
    def model_name(self) -> str:
        return self.llm.model_name

    @property
    def max_concurrency(self) -> int:
        return self.llm.max_concurrency

    def map_inner(self, change: Callable[[Any], Any]) -> Threaded:
        return Threaded(self.llm.map_inner(change), self.num_threads)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise BackendError(
                    f"threaded({self.num_threads}) of {type(self.llm).__name__} was closed; "
                    "make a new threaded(...) to run more"
                )
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.num_threads, thread_name_prefix="fnlabel-threaded")
            return self._executor

    def submit(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> Future[RunResult]:
        check_call(num_generations, first_generation)
        rows = list(as_rows(inputs))
        parts = chunks(rows, self.num_threads)
        pool = self._pool()
        futures = [
            pool.submit(self.llm.run, chunk, num_generations, first_generation=first_generation) for _, chunk in parts
        ]
        offsets = [offset for offset, _ in parts]
        return gather(futures, lambda results: merge_chunks(list(zip(offsets, results))))

    def close(self) -> None:
        """Let the chunks already submitted finish, then close the inner LLM; later calls fail. Idempotent.

        The inner LLM is never closed under a running chunk (a local model freed mid-generation
        crashes), except one that answers through Futures (``in_process``): its own ``close()``
        drains its calls, within its ``close_timeout``, so it is closed first.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor = self._executor
        answers_by_future = isinstance(self.llm, FutureLLM)
        if answers_by_future:
            self.llm.close()
        if executor is not None:
            # from a Future callback on one of its own threads, waiting would join that thread itself
            inside = threading.current_thread() in getattr(executor, "_threads", ())
            executor.shutdown(wait=not inside)
        if not answers_by_future:
            self.llm.close()


def threaded(llm: Any, num_threads: int) -> Threaded:
    """Run ``llm`` over ``num_threads`` threads (inputs split into contiguous chunks).

    A call returns a ``concurrent.futures.Future`` of the same nested list as the
    plain LLM; an exception in any worker fails the Future instead of hanging it.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> gen = threaded(llm(tasks.text_generation(), backends.echo()), num_threads=2)
        >>> len(gen([{"input": "a"}, {"input": "b"}, {"input": "c"}]).result())
        3
    """
    check_int(num_threads, "num_threads", low=1)
    if not is_llm_like(llm):
        raise ConfigError(f"threaded() needs an LLM, got {type(llm).__name__}")
    return Threaded(llm, num_threads)
