"""The child side of :func:`fnlabel.in_process` (runs in the spawned process)."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fnlabel.errors import BackendError, ConfigError
from fnlabel.types import Task, is_llm_like

__all__ = ["child_main"]


def _remote_only(*_args: Any) -> Any:
    raise ConfigError(
        "this task's functions could not be pickled, so they exist only in the in_process child; "
        "make build_prompt/parse top-level functions or frozen attrs callables to use them in the parent"
    )


def portable_task(task: Task) -> Task:
    """The task itself when it pickles, else a stand-in with the same name and keys."""
    try:
        pickle.dumps(task)
        return task
    except Exception:
        return Task(
            name=task.name,
            build_prompt=_remote_only,
            parse=_remote_only,
            input_keys=task.input_keys,
            output_keys=task.output_keys,
        )


def portable_error(exc: BaseException) -> BaseException:
    """``exc`` when it survives a pickle round trip, else a BackendError carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return BackendError(f"{type(exc).__name__}: {exc}")


def build(spec: Any) -> Any:
    """The LLM that ``spec`` describes (``spec.build()`` or ``spec()``), checked to be LLM-like."""
    make = getattr(spec, "build", None)
    built = make() if callable(make) else spec()
    if not is_llm_like(built):
        raise ConfigError(
            f"the spec built a {type(built).__name__}, not an LLM; a backend config "
            "builds only a backend: wrap it as fnlabel.LLMSpec(task, config)"
        )
    return built


def child_main(spec: Any, conn: Any, workers: int) -> None:
    """Build the LLM, then answer requests until told to stop or the parent goes away.

    ``("stop", True)`` drains: requests already received are answered first.
    ``("stop", False)`` (and a vanished parent) stops now: queued requests are
    dropped and, if one is still running, the process exits without waiting for it.
    """
    # Ctrl-C reaches the whole process group; the parent decides when the child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        llm = build(spec)
        info = {
            "model_name": str(llm.model_name),
            "task": portable_task(llm.task),
            "max_concurrency": min(workers, llm.max_concurrency),
        }
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        conn.close()
        raise SystemExit(1) from None
    conn.send(("ready", info))
    send_lock, count_lock, running = threading.Lock(), threading.Lock(), [0]

    def answer(rid: int, request: bytes) -> None:
        with count_lock:
            running[0] += 1
        try:
            try:
                inputs, k, first = pickle.loads(request)
                # pickled here, not inside send, and on its own: see fnlabel.combinators.process's protocol
                payload = pickle.dumps(("result", rid, pickle.dumps(llm.run(inputs, k, first_generation=first))))
            except BaseException as exc:
                error = pickle.dumps(portable_error(exc))
                payload = pickle.dumps(("error", rid, error, traceback.format_exc()))
            with send_lock:
                conn.send_bytes(payload)
        except OSError:  # the parent is gone; nobody waits for this answer
            pass
        finally:
            with count_lock:
                running[0] -= 1

    pool = ThreadPoolExecutor(workers, thread_name_prefix="fnlabel-child")
    drain = False
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if msg[0] == "stop":
            drain = msg[1]
            break
        pool.submit(answer, msg[1], msg[2])
    pool.shutdown(wait=drain, cancel_futures=not drain)
    with count_lock:
        busy = running[0]
    if busy:  # stopping now while the model is mid-request: its answer is no longer wanted
        os._exit(0)
    llm.close()
    conn.close()
