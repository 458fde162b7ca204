"""``in_process``: an LLM loaded and run in a child process.

The parent never builds the model: it pickles a *spec* (a record whose ``build()``
returns an LLM: an :class:`LLMSpec` or a recipe; or a top-level zero-argument factory) and a
``spawn``-started child builds the LLM from it. Requests travel over a pipe,
each tagged with a request id, so any number may be in flight and every
Future gets its own answer.

Protocol (all messages are picklable tuples):

* parent -> child: ``("run", rid, pickled (inputs, k, first_generation))`` and ``("stop", drain)``;
* child -> parent: ``("ready", info)`` once the LLM is built, ``("failed", text)``
  when building it raised, then ``("result", rid, pickled RunResult)`` or
  ``("error", rid, pickled exception, traceback_text)`` per request (pickled on
  their own, so an answer the parent cannot unpickle fails only its Future).

A daemon thread in the parent reads the answers and watches the child's
process sentinel, so a child that dies (signal, segfault, out of memory,
``os._exit``) fails every pending and later call with a :class:`~fnlabel.errors.BackendError`
at once; nothing restarts it (make a new ``in_process`` to try again).

``close()`` drains (requests already sent are answered, for up to
``close_timeout`` seconds); garbage collection and interpreter exit stop the
child at once and fail what is pending. Either way the child is reaped.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import pickle
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import attrs

from fnlabel.combinators.child import child_main
from fnlabel.combinators.futures import FutureLLM
from fnlabel.combinators.parent import State, closed, reader, shutdown, writer
from fnlabel.combinators.spec import LLMSpec
from fnlabel.errors import BackendError, ConfigError, InputError
from fnlabel.llm import Unreachable, as_rows, check_call
from fnlabel.types import Input, RunResult, Task
from fnlabel.validators import check_int, check_one_of

__all__ = ["in_process", "in_processes", "InProcess"]

log = logging.getLogger("fnlabel")


class InProcess(FutureLLM):
    """An LLM running in a child process. Make one with :func:`in_process`.

    ``__call__`` returns a Future of the nested outputs list, ``submit`` a Future
    of :class:`~fnlabel.llm.RunResult`, ``run`` blocks. ``task`` and
    ``model_name`` wait for the child to finish loading.
    """

    def __init__(self, spec: Any, *, start_method: str, workers: int, ready_timeout: float, close_timeout: float):
        self.spec = spec
        self.workers = workers
        self.ready_timeout = ready_timeout
        label = f"in_process({_short(spec)})"
        ctx: Any = multiprocessing.get_context(start_method)
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        process = ctx.Process(target=child_main, args=(spec, child_conn, workers), name="fnlabel-in-process")
        try:
            process.start()
        except Exception as exc:
            parent_conn.close()
            raise ConfigError(
                f"{label}: could not start the child ({type(exc).__name__}: {exc}); the spec must be "
                "picklable: an LLMSpec or recipe record, or a top-level function (not a lambda or closure)"
            ) from exc
        finally:
            child_conn.close()
        self._state = state = State(label, process, os.getpid(), parent_conn, queue.SimpleQueue())
        state.reader = threading.Thread(target=reader, args=(state,), name="fnlabel-in-process-reader", daemon=True)
        state.writer = threading.Thread(target=writer, args=(state,), name="fnlabel-in-process-writer", daemon=True)
        state.reader.start()
        state.writer.start()
        self.close_timeout = close_timeout
        # Runs on garbage collection and at interpreter exit *before* multiprocessing
        # joins its children, so a forgotten InProcess cannot hang the exit.
        self._finalizer = multiprocessing.util.Finalize(
            self, shutdown, args=(state, min(close_timeout, 5.0), False), exitpriority=10
        )

    def __repr__(self) -> str:
        s = self._state
        status = "failed" if s.error else ("ready" if s.info else "loading")
        return f"<InProcess {s.label} pid={s.process.pid} {status}>"

    @property
    def pid(self) -> int:
        """The child's process id."""
        return int(self._state.process.pid)

    def wait_ready(self, timeout: float | None = None) -> InProcess:
        """Block until the child has built the LLM; raise BackendError if it failed or timed out."""
        s = self._state
        timeout = self.ready_timeout if timeout is None else timeout
        if not s.ready.wait(timeout):
            raise BackendError(
                f"{s.label}: the child did not finish loading within {timeout:g} s; "
                "pass a larger ready_timeout= if the model is slow to load"
            )
        if s.info is None:
            raise BackendError(str(s.error)) from s.error
        return self

    def _info(self) -> dict[str, Any]:
        """What the child said once it had built its LLM (waits for it)."""
        self.wait_ready()  # raises unless the info came
        return self._state.info or {}

    @property
    def task(self) -> Task:
        """The child's task (waits for the child to load)."""
        task: Task = self._info()["task"]
        return task

    @property
    def model_name(self) -> str:
        """The child's model name (waits for the child to load)."""
        return str(self._info()["model_name"])

    @property
    def max_concurrency(self) -> int:
        """The child's LLM's, at most ``workers`` (waits for the child to load; 1 if it failed: its calls say why)."""
        try:
            return int(self._info()["max_concurrency"])
        except BackendError:
            return 1

    def map_inner(self, change: Any) -> Any:
        """An in_process LLM lives in its child: it cannot be changed from the parent."""
        raise Unreachable(
            type(self).__name__, "its LLM lives in the child process; change it in the spec that builds it"
        )

    def submit(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> Future[RunResult]:
        """Send a request to the child; a Future of :class:`~fnlabel.llm.RunResult`."""
        k, first = check_call(num_generations, first_generation)
        rows = list(as_rows(inputs))
        try:
            request = pickle.dumps((rows, k, first))
        except Exception as exc:
            raise InputError(
                f"{self._state.label}: the inputs must be picklable to reach the child ({type(exc).__name__}: {exc})"
            ) from exc
        fut: Future[RunResult] = Future()
        fut.set_running_or_notify_cancel()  # answers are matched by id; a request cannot be withdrawn
        s = self._state
        with s.lock:
            error = s.error or (closed(s) if s.closing else None)
            if error is None:
                rid, s.next_id = s.next_id, s.next_id + 1
                s.pending[rid] = fut
                s.outbox.put(("run", rid, request))
        if error is not None:
            fut.set_exception(error)
        return fut

    def close(self) -> None:
        """Let the child answer what it was sent (up to ``close_timeout`` s), then stop and reap it.

        Later calls fail with BackendError. Idempotent.
        """
        shutdown(self._state, self.close_timeout, drain=True)
        self._finalizer()


def _short(spec: Any) -> str:
    if isinstance(spec, LLMSpec):
        task = spec.task.name if isinstance(spec.task, Task) else spec.task.kind
        return f"LLMSpec({type(spec.backend).__name__}, task={task!r})"
    text = getattr(spec, "__qualname__", None) or repr(spec)
    return text if len(text) <= 60 else text[:57] + "..."


def in_process(
    spec: Any,
    *,
    start_method: str = "spawn",
    workers: int = 1,
    ready_timeout: float = 900.0,
    close_timeout: float = 30.0,
) -> InProcess:
    """Build and run an LLM in a child process.

    The child starts now and builds the LLM from ``spec`` while the parent goes
    on; calls made before it is ready wait in its queue. Each call returns a
    ``concurrent.futures.Future``; any number may be in flight. The child runs
    ``workers`` requests at a time (default 1: most local models are not
    thread-safe; raise it for HTTP backends).

    Faults never hang: if building the LLM raises, or the child dies (signal,
    segfault, out of memory), every pending and later call fails with
    :class:`~fnlabel.errors.BackendError` naming the exception text or the exit
    code / signal. There is no automatic restart. An exception raised by the
    LLM's ``run`` fails only that call's Future (re-raised as it was, with the
    child's traceback attached as a note). ``close()`` / ``with`` stop and reap
    the child, after answering the calls already made (up to ``close_timeout`` s);
    a forgotten one is stopped at once at garbage collection or interpreter exit
    (its pending calls fail), so keep a reference while its Futures are pending.

    Args:
        spec: picklable; a record with ``build() -> LLM`` (an :class:`LLMSpec` wrapping a backend
            config, or a recipe; a backend config alone builds only a backend) or a top-level
            zero-argument function returning an LLM.
        start_method: multiprocessing start method; ``spawn`` is safe with CUDA, vLLM and threads.
        workers: requests the child runs concurrently (threads in the child).
        ready_timeout: seconds ``task`` / ``model_name`` wait for the child to load.
        close_timeout: seconds ``close()`` lets the child finish before terminating it.

    Examples:
        >>> from fnlabel import tasks
        >>> from fnlabel.backends import EchoConfig
        >>> spec = LLMSpec(tasks.text_generation(), EchoConfig(model_name="child"))
        >>> with in_process(spec) as gen:
        ...     gen([{"input": "hi"}]).result()[0][0]["model_name"]
        'child'
    """
    if not (callable(getattr(spec, "build", None)) or callable(spec)):
        raise ConfigError(
            f"in_process needs a spec with build() (an LLMSpec or recipe record) or a zero-argument "
            f"factory function, got {type(spec).__name__}"
        )
    check_int(workers, "workers", low=1)
    check_one_of(start_method, "start_method", tuple(multiprocessing.get_all_start_methods()))
    return InProcess(
        spec, start_method=start_method, workers=workers, ready_timeout=ready_timeout, close_timeout=close_timeout
    )


def in_processes(spec: Any, processes: int) -> Any:
    """An HTTP backend's LLM spread over ``processes`` children, so its requests use as many cores.

    Each child is an :func:`in_process` LLM built from ``spec`` with its share of the backend's
    ``max_concurrency`` (and of its ``max_requests_per_minute`` / ``max_tokens_per_minute``), and
    each call's rows are spread over the children (``pooled(by="rows")``): outputs come back in
    input order, the same as from one process. A child answers as many calls at once as its share
    (each in a thread made when needed), so its ``max_concurrency`` is its whole share: the runner
    sizes its window of batches from the sum, which is the backend's ``max_concurrency``.

    Examples:
        >>> from fnlabel.backends import EchoConfig
        >>> from fnlabel.tasks import text_generation
        >>> in_processes(LLMSpec(text_generation(), EchoConfig()), 2)
        Traceback (most recent call last):
        ...
        fnlabel.errors.ConfigError: processes: backend 'echo' has no max_concurrency to share; ...
    """
    from fnlabel.combinators.pool import pooled, split_generations

    check_int(processes, "processes", low=1)
    config = spec.backend
    concurrency = getattr(config, "max_concurrency", None)
    if not isinstance(concurrency, int):
        raise ConfigError(
            f"processes: backend {getattr(type(config), 'kind', type(config).__name__)!r} has no max_concurrency "
            "to share; processes spread the requests of an HTTP backend (for local models see in_process and pooled)"
        )
    members = []
    try:
        for share in split_generations(max(concurrency, processes), processes):
            changes: dict[str, Any] = {"max_concurrency": share}
            for budget in ("max_requests_per_minute", "max_tokens_per_minute"):
                value = getattr(config, budget, None)
                if value is not None:
                    changes[budget] = max(1, value // processes)
            member = attrs.evolve(spec, backend=attrs.evolve(config, **changes))
            members.append(in_process(member, workers=share))
        return pooled(members, by="rows")
    except BaseException:
        for built in members:
            built.close()
        raise
