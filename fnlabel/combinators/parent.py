"""The parent side of :func:`~fnlabel.combinators.process.in_process`'s pipe: the state its
reader and writer threads share, and how the child is stopped and reaped.

The reader thread is the only one that reads the pipe and waits for (reaps) the child; it
settles each call's Future with its answer, and fails every waiting call, saying why, once
the child exits. The writer thread sends requests, so a call returns its Future at once
even while the child is still loading.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import threading
from concurrent.futures import Future
from multiprocessing.connection import wait as wait_for
from typing import Any

import attrs

from fnlabel.errors import BackendError
from fnlabel.types import RunResult

__all__ = ["State", "reader", "writer", "shutdown", "closed"]

log = logging.getLogger("fnlabel")


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"signal {name} (exit code {exitcode})"
    return f"exit code {exitcode}"


@attrs.define(eq=False)
class State:
    """Everything the reader thread and the finalizer share (never the InProcess itself)."""

    label: str
    process: Any
    owner_pid: int
    conn: Any
    outbox: queue.SimpleQueue[Any]
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    ready: threading.Event = attrs.field(factory=threading.Event)
    info: dict[str, Any] | None = None
    error: BackendError | None = None  # set once: the child failed, died or was closed
    closing: bool = False  # close() was called: no new calls, pending ones may still be answered
    pending: dict[int, Future[RunResult]] = attrs.field(factory=dict)
    next_id: int = 0
    reader: threading.Thread | None = None
    writer: threading.Thread | None = None

    def fail_all(self, error: BackendError) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
            futures, self.pending = list(self.pending.values()), {}
        self.ready.set()
        for fut in futures:
            if not fut.done():
                fut.set_exception(self.error)


def writer(state: State) -> None:
    # A thread of its own, so a call returns its Future at once even while the
    # child is still loading and the pipe is full.
    while True:
        msg = state.outbox.get()
        if msg is None:
            return
        try:
            state.conn.send(msg)
        except (OSError, ValueError):  # the child is gone; the reader reports why
            return
        if msg[0] == "stop":
            return


def reader(state: State) -> None:
    conn, sentinel = state.conn, state.process.sentinel
    while True:
        ready = wait_for([conn, sentinel])
        if conn not in ready:
            break  # the child exited and left nothing to read
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        except Exception as exc:  # e.g. the ready info's task cannot be rebuilt here: fail, never hang
            state.fail_all(
                BackendError(
                    f"{state.label}: a message from the child could not be read in the parent "
                    f"({type(exc).__name__}: {exc}); the child is stopped"
                )
            )
            state.outbox.put(("stop", False))
            continue
        kind = msg[0]
        if kind == "ready":
            state.info = msg[1]
            state.ready.set()
        elif kind == "failed":
            state.fail_all(BackendError(f"{state.label}: building the LLM failed in the child: {msg[1]}"))
        elif kind in ("result", "error"):
            _answer(state, msg)
    _child_gone(state)
    conn.close()


def _answer(state: State, msg: tuple[Any, ...]) -> None:
    """Settle the Future of one ``("result" | "error", rid, pickled value[, traceback])`` message."""
    kind = msg[0]
    with state.lock:
        fut = state.pending.pop(msg[1], None)
    if fut is None or fut.done():
        return
    try:  # the answer travels as its own pickle, so one that cannot be rebuilt here fails only its call
        value = pickle.loads(msg[2])
    except Exception as exc:
        fut.set_exception(
            BackendError(
                f"{state.label}: the child's {kind} for this call could not be unpickled in the parent "
                f"({type(exc).__name__}: {exc}); parsed outputs must be plain data (or of classes "
                "the parent can import and rebuild)"
            )
        )
        return
    if kind == "result":
        fut.set_result(value)
    else:
        value.add_note(f"raised in the {state.label} child:\n{msg[3]}")
        fut.set_exception(value)


def _child_gone(state: State) -> None:
    """Reap the exited child and fail every call still waiting, saying why."""
    proc = state.process
    proc.join()
    with state.lock:
        waiting = len(state.pending)
    if state.closing:
        how = "" if proc.exitcode == 0 else f" (the child was stopped with {_exit_reason(proc.exitcode)})"
        error = closed(state, f"{how}; {waiting} request(s) sent before close() got no answer" if waiting else how)
    else:
        error = BackendError(
            f"{state.label}: the child process (pid {proc.pid}) died with {_exit_reason(proc.exitcode)} "
            f"while {waiting} request(s) were pending (killed, crashed or out of memory?); every later "
            "call fails too: make a new in_process(...) to start a fresh child"
        )
    state.fail_all(error)


def closed(state: State, detail: str = "") -> BackendError:
    return BackendError(f"{state.label} was closed{detail}; make a new in_process(...) to run more")


def shutdown(state: State, timeout: float, drain: bool) -> None:
    """Stop the child (asking first, then SIGTERM, then SIGKILL) and reap it; idempotent.

    ``drain``: let the child answer what it was already sent (``close()``); else
    fail pending calls now and stop the child at once (garbage collection, exit).
    """
    if os.getpid() != state.owner_pid:  # a forked copy of the parent does not own the child
        return
    with state.lock:
        state.closing = True
    if not drain:
        state.fail_all(closed(state))
    proc, reader = state.process, state.reader
    state.outbox.put(("stop", drain))
    if reader is None or reader is threading.current_thread():
        return  # (a Future callback dropped the last reference) the reader reaps the child once it exits
    # Only the reader thread waits for (reaps) the child; here we wait for the reader.
    reader.join(timeout)
    if reader.is_alive():
        log.warning("%s: child %s did not stop within %.0f s; terminating it", state.label, proc.pid, timeout)
        proc.terminate()
        reader.join(5)
    if reader.is_alive():
        proc.kill()
        reader.join()
    state.outbox.put(None)
    if state.writer is not None:
        state.writer.join(5)
