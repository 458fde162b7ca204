"""Keeping a vLLM engine full across calls: one thread steps the engine, every call queues its requests.

``LLM.generate(prompts)`` runs the engine until its own prompts are done, so a run that calls it
batch after batch lets the engine drain at the end of every batch: its other sequence slots idle
while the batch's longest generation finishes. Here a call hands its prompts to the engine's
:class:`Feeder`, which adds them to the engine's queue with ``LLM.enqueue`` / ``LLM.enqueue_chat``
(vLLM's own rendering: the same requests ``LLM.generate`` / ``LLM.chat`` make) and steps the engine
while anything is unfinished, handing each finished request back to its call. Several calls in
flight (a run keeps ``max_concurrency`` prompts queued) therefore keep the engine full, and each
call still gets its prompts' outputs in order. Only the feeder thread touches the engine.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from fnlabel.errors import BackendError

__all__ = ["Engine", "Feeder", "Rejected"]


class Rejected:
    """The outcome of a prompt vLLM refused to queue (e.g. longer than ``max_model_len``): only it fails."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Job:
    def __init__(self, method: str, prompts: list[Any], sampling: Any) -> None:
        self.method, self.prompts, self.sampling = method, prompts, sampling
        self.results: list[Any] = [None] * len(prompts)
        self.left = len(prompts)
        self.error: BaseException | None = None
        self.done = threading.Event()


class Feeder:
    """The thread that owns a ``vllm.LLM``'s engine loop (see the module doc). Started on first use."""

    def __init__(self, llm: Any, name: str) -> None:
        self.llm, self.name = llm, name
        self._queued: deque[_Job] = deque()
        self._owner: dict[str, tuple[_Job, int, str]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def run(self, method: str, prompts: list[Any], sampling: Any) -> list[Any]:
        """Each prompt's finished ``RequestOutput`` (or :class:`Rejected`), in order; blocks until all are done."""
        job = _Job(method, prompts, sampling)
        with self._cond:
            if self._stopping:
                raise BackendError(f"vllm ({self.name}): the engine was shut down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="fnlabel-vllm-feeder", daemon=True)
                self._thread.start()
            self._queued.append(job)
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.results

    def stop(self) -> None:
        """Fail the calls still waiting and end the thread (after the step it is in)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)

    def _loop(self) -> None:
        engine = self.llm.llm_engine
        while True:
            with self._cond:
                while not self._queued and not self._owner and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                jobs = list(self._queued)
                self._queued.clear()
            for job in jobs:
                self._add(job)
            if not self._owner:
                continue
            try:
                outputs = engine.step()
            except BaseException as exc:  # the engine died: every call in flight fails with it
                self._fail_all(BackendError(f"vllm ({self.name}) failed: {type(exc).__name__}: {exc}"))
                continue
            for out in outputs:
                if out.finished:
                    self._finish(out.request_id, out)
        self._fail_all(BackendError(f"vllm ({self.name}): the engine was shut down while this call ran"))

    def _add(self, job: _Job) -> None:
        from vllm.exceptions import VLLMValidationError

        add = self.llm.enqueue if job.method == "generate" else self.llm.enqueue_chat
        for j, prompt in enumerate(job.prompts):
            try:
                ids = add([prompt], job.sampling, use_tqdm=False)
            except (VLLMValidationError, ValueError) as exc:  # this prompt only
                job.results[j] = Rejected(exc)
                job.left -= 1
                continue
            except Exception as exc:
                job.error = BackendError(f"vllm ({self.name}) {job.method} failed: {type(exc).__name__}: {exc}")
                job.left = len(job.prompts)  # (its other requests are dropped as they finish)
                job.done.set()
                return
            # (vLLM 0.32 returns "<id>-<suffix>" and reports the output under "<id>": both are kept)
            keys = (ids[0], ids[0].rsplit("-", 1)[0])
            for key, other in (keys, keys[::-1]):
                self._owner[key] = (job, j, other)
        if job.left == 0:
            job.done.set()

    def _finish(self, request_id: str, output: Any) -> None:
        owner = self._owner.pop(request_id, None)
        if owner is None:
            return
        job, j, other = owner
        self._owner.pop(other, None)
        if job.error is not None:
            return
        job.results[j] = output
        job.left -= 1
        if job.left == 0:
            job.done.set()

    def _fail_all(self, error: BaseException) -> None:
        jobs = {id(job): job for job, _, _ in self._owner.values()}
        with self._cond:
            jobs.update({id(job): job for job in self._queued})
            self._queued.clear()
        self._owner.clear()
        for job in jobs.values():
            job.error = error
            job.done.set()


class Engine:
    """A loaded ``vllm.LLM`` and the :class:`Feeder` that alone steps it."""

    def __init__(self, llm: Any, model_name: str) -> None:
        self.llm = llm
        self.model_name = model_name
        self.feeder = Feeder(llm, model_name)

    def shutdown(self) -> None:
        self.feeder.stop()  # (after the step it is in: the engine is never shut down under it)
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
