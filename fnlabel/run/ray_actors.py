"""What runs on the Ray cluster during a Ray run: the replicas, and the keeper of the run's cache.

* :class:`Replica` is one actor of the pool: it builds the recipe's LLM once, from the
  picklable :class:`~fnlabel.run.engines.Plan`, and turns each batch it is sent into a
  :class:`~fnlabel.run.batch.BatchResult` with the runner's own :class:`~fnlabel.run.batch.BatchRunner`,
  so a Ray run writes what a local run writes.
* :class:`CacheKeeper` holds the run's per-sample cache file on the driver's node, and
  :class:`RemoteStore` is how a replica on any node reads and writes it: every generation
  made anywhere in the cluster lands in the one cache a rerun reads, and a replica's batch
  result leaves it only after its generations are committed there.

Ray is imported only when these run (they are made remote by :mod:`fnlabel.run.ray_pool`).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fnlabel.errors import BackendError
from fnlabel.run.batch import Batch, BatchResult
from fnlabel.run.engines import Plan
from fnlabel.types import Generation

__all__ = ["Replica", "CacheKeeper", "RemoteStore", "pickled_error"]

#: a replica sends its gathered cache writes to the driver's node once it holds this many, with the first
#: write this many seconds after the last send, and at the end of each batch
FLUSH_ENTRIES, FLUSH_SECONDS = 256, 0.5


def pickled_error(exc: BaseException) -> bytes:
    """An actor's error, pickled for the driver (Ray would keep only its text)."""
    try:
        return pickle.dumps(exc)
    except Exception:
        return pickle.dumps(BackendError(f"{type(exc).__name__}: {exc}"))


class Replica:
    """One actor of a Ray run: the recipe's LLM, built once; ``run`` turns a batch into its result."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.llm: Any = None
        self.error: BaseException | None = None
        try:
            self.llm = plan.build_llm()
        except Exception as exc:  # the driver stops the run with it (as a local run would)
            self.error = exc

    def ready(self) -> tuple[bytes | None, str, str]:
        """``(None, model name, node id)`` once the LLM is built; ``(pickled error, "", "")`` when it could not be."""
        if self.error is not None:
            return pickled_error(self.error), "", ""
        import ray

        return None, self.plan.runner.model_name(self.llm), ray.get_runtime_context().get_node_id()

    def run(self, batch: Batch) -> BatchResult:
        """The batch's result; its new generations are in the driver's cache before it is returned."""
        result = self.plan.runner.run(self.llm, batch)
        if isinstance(self.plan.cache, RemoteStore):
            self.plan.cache.sync()
        return result

    def __del__(self) -> None:
        llm = getattr(self, "llm", None)  # (Ray makes instances of a subclass without __init__)
        if llm is not None:
            llm.close()


class CacheKeeper:
    """The actor that owns a Ray run's cache store, on the driver's node; replicas reach it by
    :class:`RemoteStore`. Ray runs an actor's calls from one caller in the order they were sent."""

    def __init__(self, store: Any) -> None:
        self.store = store  # (a SQLiteStore arrives as its path and opens the file here)

    def get(self, keys: Sequence[bytes], num_generations: int) -> dict[bytes, dict[int, str | Generation]]:
        return self.store.get(keys, num_generations)

    def put(self, entries: list[tuple[bytes, int, str | Generation]], backend: bytes, strict: bool) -> None:
        self.store.put(entries, backend, strict)

    def tally(self, hits: int, misses: int) -> None:
        self.store.tally(hits, misses)


class RemoteStore:
    """A :class:`~fnlabel.combinators.store.Store` whose file is on the driver's node, behind a
    :class:`CacheKeeper`: reads wait for the keeper's answer; writes are gathered and sent without
    waiting (see :data:`FLUSH_ENTRIES`), and :meth:`sync` sends the rest and waits until every write is committed."""

    def __init__(self, keeper: Any) -> None:
        self.keeper = keeper
        self._last: Any = None
        self._lock = threading.Lock()
        self._rows: dict[tuple[bytes, bool], list[tuple[bytes, int, str | Generation]]] = {}
        self._sent = time.monotonic()
        self._broken: BaseException | None = None  # the keeper could not be reached: sync raises it

    def __getstate__(self) -> dict[str, Any]:
        return {"keeper": self.keeper}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keeper"])  # type: ignore[misc]

    def get(self, keys: Sequence[bytes], num_generations: int) -> dict[bytes, dict[int, str | Generation]]:
        import ray

        try:
            return ray.get(self.keeper.get.remote(list(keys), num_generations))
        except ray.exceptions.RayError as exc:  # (the batch's rows would be blamed: the run must stop)
            self._broken = exc
            raise

    def put(self, entries: Iterable[tuple[bytes, int, str | Generation]], backend: bytes, strict: bool = False) -> None:
        with self._lock:
            rows = self._rows.setdefault((backend, strict), [])
            rows.extend(entries)
            if len(rows) >= FLUSH_ENTRIES or time.monotonic() - self._sent > FLUSH_SECONDS:
                self._flush()

    def _flush(self) -> None:
        """Send the gathered writes (under the lock: the last write sent is the last the keeper runs)."""
        for (backend, strict), rows in self._rows.items():
            if rows:
                self._last = self.keeper.put.remote(rows, backend, strict)
        self._rows = {}
        self._sent = time.monotonic()

    def tally(self, hits: int, misses: int) -> None:
        self.keeper.tally.remote(hits, misses)

    def sync(self) -> None:
        """Wait until the writes sent so far are committed (an error writing them is raised here)."""
        import ray

        with self._lock:
            self._flush()
            last, self._last = self._last, None
        if self._broken is not None:
            raise self._broken
        if last is not None:
            ray.get(last)

    def close(self) -> None:
        """Nothing to release here: the keeper closes the file."""
