"""Combinators: functions that take an LLM and return one.

* :func:`with_prompt_format` / :func:`with_prompt_formatting_fn` return the LLM with
  a different way of formatting prompts.
* :func:`threaded` returns an LLM whose call returns a ``concurrent.futures.Future``.

Every LLM-like value offers ``run(inputs, k) -> RunResult``,
``submit(inputs, k) -> Future[RunResult]``, ``task`` and ``model_name``, so
combinators compose in any order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import attrs

from fnlabel.errors import BackendError, ConfigError
from fnlabel.formats import check_format
from fnlabel.llm import (
    LLM, RowFailure, RunResult, as_rows, check_first_generation, check_num_generations, max_concurrency,
)
from fnlabel.types import FormattedPrompt, Input, LLMOutput, Prompt

__all__ = ["with_prompt_format", "with_prompt_formatting_fn", "threaded", "Threaded", "FutureLLM", "gather", "chunks"]

T = TypeVar("T")


_FORMAT_FIX = (
    "change the prompt format of",
    "apply it to the LLM before wrapping (for in_process, set it in the spec that builds the LLM)",
)


def _map_inner(llm: Any, change: Callable[[LLM], LLM], what: tuple[str, str] = _FORMAT_FIX) -> Any:
    """Apply ``change`` to the plain LLM(s) inside ``llm`` and rebuild the wrappers.

    ``what``: (the action, how to do it instead) for the error when some LLM inside cannot be reached.
    """
    if isinstance(llm, LLM):
        return change(llm)
    inner = getattr(llm, "map_inner", None)
    if inner is None:
        raise ConfigError(f"cannot {what[0]} {type(llm).__name__}: {what[1]}")
    return inner(lambda member: _map_inner(member, change, what))


def with_prompt_format(llm: T, fmt: str) -> T:
    """The same LLM, formatting prompts as ``fmt``.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> gen = with_prompt_format(llm(tasks.text_generation(), backends.echo()), "chatml")
        >>> gen.prompt_format
        'chatml'
    """
    check_format(fmt)
    return _map_inner(llm, lambda m: attrs.evolve(m, prompt_format=fmt))


def with_prompt_formatting_fn(llm: T, fn: Callable[[Prompt], FormattedPrompt]) -> T:
    """The same LLM, formatting prompts with ``fn(Prompt)``; it wins over any prompt format.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> gen = with_prompt_formatting_fn(
        ...     llm(tasks.text_generation(system_prompt=""), backends.echo(), prompt_format="chatml"),
        ...     lambda p: f"Q: {p.formatted_prompt}",
        ... )
        >>> gen([{"input": "hi"}])[0][0]["prompt_used"]
        'Q: hi'
    """
    if not callable(fn):
        raise ConfigError(f"prompt_formatting_fn must be callable, got {fn!r}")
    return _map_inner(llm, lambda m: attrs.evolve(m, prompt_formatting_fn=fn))


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
        fut.add_done_callback(lambda f, i=i: settle(i, f))
    return done


def merge_chunks(parts: list[tuple[int, RunResult]]) -> RunResult:
    """Concatenate chunk results, shifting each chunk's failure rows by its offset."""
    outputs: list[list[LLMOutput]] = []
    failures: list[RowFailure] = []
    for offset, res in parts:
        outputs.extend(res.outputs)
        failures.extend(attrs.evolve(f, row=f.row + offset) for f in res.failures)
    return RunResult(outputs, tuple(failures))


class FutureLLM:
    """What the LLMs whose calls return Futures share (:class:`Threaded`, ``InProcess``).

    A subclass defines ``submit(inputs, k) -> Future[RunResult]`` and ``close()``.
    """

    __slots__ = ()

    def submit(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> Future[RunResult]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> Future[list[list[LLMOutput]]]:
        """A Future of the nested outputs list (one list per input, ``num_generations`` each)."""
        return gather([self.submit(inputs, num_generations)], lambda rs: rs[0].outputs)

    def generate(self, inputs: Sequence[Input], num_generations: int = 1) -> Future[list[list[LLMOutput]]]:
        """The same as calling the LLM."""
        return self(inputs, num_generations)

    def run(self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0) -> RunResult:
        """Blocking form of :meth:`submit`."""
        return self.submit(inputs, num_generations, first_generation=first_generation).result()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.define(eq=False)
class Threaded(FutureLLM):
    """An LLM run over ``num_threads`` threads; calls return Futures. Make one with :func:`threaded`."""

    llm: Any
    num_threads: int
    _executor: ThreadPoolExecutor | None = attrs.field(default=None, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _closed: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def task(self) -> Any:
        return self.llm.task

    @property
    def model_name(self) -> str:
        return self.llm.model_name

    @property
    def max_concurrency(self) -> int:
        return max_concurrency(self.llm)

    def map_inner(self, change: Callable[[Any], Any]) -> Threaded:
        return Threaded(change(self.llm), self.num_threads)

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
        check_num_generations(num_generations)
        check_first_generation(first_generation)
        rows = list(as_rows(inputs))
        parts = chunks(rows, self.num_threads)
        pool = self._pool()
        kw = {"first_generation": first_generation} if first_generation else {}  # an LLM-like may not take it
        futures = [pool.submit(self.llm.run, chunk, num_generations, **kw) for _, chunk in parts]
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
        close = getattr(self.llm, "close", None)
        if close is not None and isinstance(self.llm, FutureLLM):
            close()
            close = None
        if executor is not None:
            # from a Future callback on one of its own threads, waiting would join that thread itself
            inside = threading.current_thread() in getattr(executor, "_threads", ())
            executor.shutdown(wait=not inside)
        if close is not None:
            close()



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
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    if not hasattr(llm, "run"):
        raise ConfigError(f"threaded() needs an LLM (with .run), got {type(llm).__name__}")
    return Threaded(llm, num_threads)
