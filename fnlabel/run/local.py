"""The local engine: batches computed by threads in this process, a window ahead of the writer."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from itertools import chain, islice

from fnlabel.run.batch import Batch, BatchResult
from fnlabel.run.engines import Log, Plan
from fnlabel.types import LLMLike

__all__ = ["LocalEngine"]


class LocalEngine:
    """Runs the plan's LLM (built on first use) over batches, keeping its ``max_concurrency`` busy.

    A local model runs one batch at a time (one ahead of the writer, so the model never
    waits for the output file); an LLM with ``max_concurrency`` c > 1 (HTTP backends)
    runs ``ceil(c / batch_size) + 1`` batches at once, so about c requests stay in flight
    and a slow request holds up only its own batch's turn to be written. Results are
    still yielded in order; only the batches in flight are referenced.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.llm: LLMLike | None = None
        self.ahead: list[Future[BatchResult]] = []

    def get_llm(self) -> LLMLike:
        if self.llm is None:
            self.llm = self.plan.build_llm()
        return self.llm

    def run_batch(self, batch: Batch) -> BatchResult:
        return self.plan.runner.run(self.get_llm(), batch)

    def results(self, batches: Iterator[Batch]) -> Generator[tuple[Batch, BatchResult], None, None]:
        first = next(batches, None)
        if first is None:
            return
        second = next(batches, None)
        if second is None:  # one batch: no thread
            yield first, self.run_batch(first)
            return
        concurrency = self.get_llm().max_concurrency  # built once, here, before any worker thread
        window = 1 if concurrency <= 1 else -(-concurrency // len(first.indices)) + 1
        workers = ThreadPoolExecutor(window, thread_name_prefix="fnlabel-batch")
        queued = chain([first, second], batches)
        pending = deque((b, workers.submit(self.run_batch, b)) for b in islice(queued, window))
        try:
            while pending:
                current, future = pending[0]
                result = future.result()  # (Ctrl-C lands here: the batch stays pending, see settle)
                pending.popleft()
                following = next(queued, None)
                if following is not None:
                    pending.append((following, workers.submit(self.run_batch, following)))
                yield current, result
        finally:  # a stopped run (max failures, Ctrl-C, an error) does not start another batch
            workers.shutdown(wait=False, cancel_futures=True)
            if window == 1:  # see settle
                self.ahead = [f for _, f in pending if not f.done()]

    def settle(self, log: Log | None = None, *, interrupted: bool = False) -> None:
        """Wait for a batch a local model still computes ahead of a stopped run.

        An HTTP backend's close() fails its calls in flight, so they need no wait; a local model
        must not be freed under a running batch (llama.cpp crashes). A KeyboardInterrupt while
        waiting propagates: the model is then not closed, and is left to the process's exit.
        """
        ahead = [f for f in self.ahead if not f.done()]
        if ahead:
            if log is not None:
                again = " (Ctrl-C again to quit at once)" if interrupted else ""
                log(f"stopping: the batch in flight finishes first{again}")
            wait(ahead)

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
