"""The driver's side of a Ray run: a pool of replica actors fed with batches, results in input order.

:class:`Pool` starts ``replicas`` :class:`~fnlabel.run.ray_actors.Replica` actors (and the
:class:`~fnlabel.run.ray_actors.CacheKeeper` of the run's cache on the driver's node), sends
each replica that is ready up to two batches (one running, one waiting, so it never idles
between batches), and yields each batch's result once every batch before it is yielded.

What fails, and what happens then:

* **A replica dies** (a crash in the backend, an out-of-memory kill): a new replica is started
  in its place (on any node with the resources), the batches it held are sent again, and the
  one it was running counts one attempt against it.
* **A node is lost** (its replicas with it): the same, but no batch is charged (a lost node is
  no batch's fault); a batch result lost with its node's object store is computed again.
* **A poison batch** (one that kills its replica every time): after ``max_batch_attempts``
  attempts its rows are split in two halves, each tried once, alone on its replica; a half that
  kills its replica again is split again, down to single rows. A row that kills its replica on its own is
  recorded as failed (``stage = "replica"``), and the rest of its batch is written as usual.
* **Replicas that die while starting** (before their LLM is built), more than
  ``max_batch_attempts`` x ``replicas`` times in a row: the run stops with
  :class:`~fnlabel.errors.BackendError`.
* **A replica call that raises** (the run's cache keeper lost): the run stops with
  :class:`~fnlabel.errors.BackendError`, rather than record the batch's rows as failed.
* **An LLM that cannot be built** (a missing model): the run stops with that error.

Only a window of batches is held (a few per replica), so a run's memory does not grow with
its input.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Generator, Iterator
from typing import Any

import attrs

from fnlabel.errors import BackendError, ConfigError
from fnlabel.run.batch import Batch, BatchResult
from fnlabel.run.engines import Plan
from fnlabel.run.ray_actors import CacheKeeper, RemoteStore, Replica

__all__ = ["Pool"]

#: batches sent to a replica at once: the one it runs and the next
DEPTH = 2


@attrs.define(eq=False)
class _Work:
    """Rows of a batch to compute: the batch's sequence number, their positions in it, attempts made."""

    seq: int
    positions: list[int]
    attempts: int = 0
    split: bool = False
    crashes: int = 0  # replicas that died running these rows (with the batch they came from)


@attrs.define(eq=False)
class _Slot:
    """One replica actor: its handle, whether its LLM is built, the work sent to it (oldest first)."""

    actor: Any
    ready_ref: Any
    ready: bool = False
    node: str = ""  # the node it runs on, once ready
    sent: deque[tuple[Any, _Work]] = attrs.Factory(deque)


def _reraise(fatal: bytes) -> None:
    inner = pickle.loads(fatal)
    try:
        outer = type(inner)(f"{inner} (raised on a Ray replica)")
    except Exception:
        raise inner from None
    raise outer from inner


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


class Pool:
    """Replica actors on a connected Ray, computing a run's batches (see the module docstring)."""

    def __init__(self, ray: Any, plan: Plan) -> None:
        self.ray, self.plan, run = ray, plan, plan.recipe.run
        self.max_attempts = run.max_batch_attempts
        self.keeper = None
        self.slots: list[_Slot] = []
        if plan.cache is not None:
            _check_no_children(plan.recipe)
            self.keeper = self._keeper(plan.cache)
            plan = attrs.evolve(plan, cache=RemoteStore(self.keeper))
        self.replica_plan = plan
        try:
            self.actor_class = ray.remote(Replica).options(
                num_cpus=run.num_cpus,
                num_gpus=run.num_gpus,
                resources=dict(run.resources) or None,
                max_restarts=0,  # a dead replica is replaced by the pool, which knows what it was running
                max_task_retries=0,
            )
        except ValueError as exc:
            self.stop()
            raise ConfigError(f"[run] Ray replica settings: {exc}") from exc
        self.owner: dict[Any, _Slot] = {}
        self.queue: deque[_Work] = deque()
        self.model_name = ""
        self.start_failures = 0
        self.parts: dict[int, list[tuple[list[int], BatchResult]]] = {}
        self.left: dict[int, int] = {}
        for _ in range(run.replicas):
            self._start()

    def _keeper(self, cache: Any) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from fnlabel.combinators.cache import as_store

        try:  # the driver's node (through Ray Client, ray://, the driver has none: the head's, then)
            here: Any = NodeAffinitySchedulingStrategy(self.ray.get_runtime_context().get_node_id(), soft=False)
        except Exception:
            here = "DEFAULT"
        keeper = self.ray.remote(CacheKeeper).options(num_cpus=0, scheduling_strategy=here, max_restarts=0)
        return keeper.remote(as_store(cache))

    def _start(self) -> None:
        actor = self.actor_class.remote(self.replica_plan)
        slot = _Slot(actor, actor.ready.remote())
        self.slots.append(slot)
        self.owner[slot.ready_ref] = slot

    # --- the run ------------------------------------------------------------------------------

    def results(self, batches: Iterator[Batch]) -> Generator[tuple[Batch, BatchResult], None, None]:
        """Each batch with its result, in order; at most a few batches per replica are read ahead."""
        window: dict[int, Batch] = {}
        cap = DEPTH * 2 * len(self.slots) + 2
        read = out = 0
        source: Iterator[Batch] | None = iter(batches)
        while True:
            while source is not None and len(window) < cap:
                batch = next(source, None)
                if batch is None:
                    source = None
                    break
                window[read], self.parts[read], self.left[read] = batch, [], len(batch.indices)
                self.queue.append(_Work(read, list(range(len(batch.indices)))))
                read += 1
            self._send(window)
            while out in window and self.left[out] == 0:
                batch, parts = window.pop(out), self.parts.pop(out)
                del self.left[out]
                whole = len(parts) == 1 and len(parts[0][0]) == len(batch.indices)
                yield batch, parts[0][1] if whole else BatchResult.join(parts, len(batch.indices))
                out += 1
            if source is None and not window:
                return
            self._wait(window)

    def _send(self, window: dict[int, Batch]) -> None:
        """Send waiting work to ready replicas: first one batch each, then a second.

        A piece of a split batch runs alone on its replica: a replica that dies right after finishing
        one batch may take that batch's result with it, so only a piece with nothing beside it can
        be told apart as the one that killed it.
        """
        for depth in range(1, DEPTH + 1):
            for slot in self.slots:
                if slot.ready and len(slot.sent) < depth and self.queue:
                    alone = bool(slot.sent) and slot.sent[0][1].split
                    if alone or (self.queue[0].split and slot.sent):
                        continue
                    work = self.queue.popleft()
                    batch = window[work.seq]
                    if len(work.positions) < len(batch.indices):
                        batch = _subset(batch, work.positions)
                    ref = slot.actor.run.remote(batch)
                    slot.sent.append((ref, work))
                    self.owner[ref] = slot

    def _wait(self, window: dict[int, Batch]) -> None:
        """Wait for a replica to be ready or a batch to come back, and take what came."""
        done, _ = self.ray.wait(list(self.owner), num_returns=1)
        for ref in done:
            slot = self.owner.pop(ref, None)
            if slot is None:
                continue
            if ref is slot.ready_ref:
                self._on_ready(slot)
            else:
                self._on_result(slot, ref, window)

    def _on_ready(self, slot: _Slot) -> None:
        try:
            fatal, *name = self.ray.get(slot.ready_ref)
        except self.ray.exceptions.RayError as exc:  # it died while starting (its node lost, a crash)
            self._drop(slot)
            self.start_failures += 1
            if self.start_failures > self.max_attempts * self.plan.recipe.run.replicas:
                raise BackendError(
                    f"Ray replicas keep dying before their LLM is built ({self.start_failures} so far; last: "
                    f"{_first_line(exc)}); the actors' logs are in /tmp/ray/session_latest/logs on their nodes"
                ) from exc
            self._start()
            return
        if fatal is not None:
            _reraise(fatal)
        (self.model_name, slot.node), slot.ready = name, True
        self.start_failures = 0  # (counted while none starts: transient losses add up to nothing)

    def _on_result(self, slot: _Slot, ref: Any, window: dict[int, Batch]) -> None:
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            # the replica lives but its call raised, which a batch's rows cannot cause (the runner records
            # their errors): the run's cache keeper is gone, or a result could not be sent back
            raise BackendError(f"a Ray replica failed outside its batch's rows: {_first_line(exc)}") from exc
        except self.ray.exceptions.RayActorError as exc:  # the replica died: what it held goes elsewhere
            self._replace(slot, _first_line(exc), window)
            return
        except self.ray.exceptions.RayError:  # its result was lost with its node: computed again, not charged
            result = None
        work = next(w for r, w in slot.sent if r is ref)
        slot.sent = deque((r, w) for r, w in slot.sent if r is not ref)
        if result is None:
            self.queue.appendleft(work)
        else:
            self._record(work, result)

    def _replace(self, slot: _Slot, reason: str, window: dict[int, Batch]) -> None:
        """A dead replica: what it finished is kept; the batch it was running counts an attempt; the ones
        waiting behind it are sent again as they are."""
        refs = [r for r, _ in slot.sent]
        # each comes back soon, its result or the replica's death (which may be noticed before a result it
        # sent just before dying): waiting for all keeps a finished batch from being charged for the next
        back = set(self.ray.wait(refs, num_returns=len(refs), timeout=10, fetch_local=False)[0])
        lost = []
        for ref, work in slot.sent:  # (in the order sent, which is the order it ran them)
            result = self._result(ref) if ref in back else None
            if result is None:
                lost.append(work)
            else:
                self._record(work, result)
        self._drop(slot)
        self._start()
        node_lost = slot.node not in self._live_nodes()
        for work in reversed(lost if node_lost else lost[1:]):
            self.queue.appendleft(work)
        if lost and not node_lost:  # (a lost node is no batch's fault: nothing is charged)
            self._crashed(lost[0], reason, window)

    def _live_nodes(self) -> set[str]:
        return {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}

    def _result(self, ref: Any) -> BatchResult | None:
        """The result of a batch that came back (wherever its result object is), or None if it failed."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError:  # (failed, or its object was lost with its node)
            return None

    def _drop(self, slot: _Slot) -> None:
        self.slots.remove(slot)
        for ref in [slot.ready_ref, *(r for r, _ in slot.sent)]:
            self.owner.pop(ref, None)
        slot.sent.clear()
        self.ray.kill(slot.actor, no_restart=True)

    def _crashed(self, work: _Work, reason: str, window: dict[int, Batch]) -> None:
        """Rows whose replica died running them: tried again, split, or (a single row) recorded as failed."""
        work.attempts += 1
        work.crashes += 1
        limit = 1 if work.split else self.max_attempts
        if work.attempts < limit:
            self.queue.appendleft(work)
        elif len(work.positions) > 1:  # look for the row(s) that kill the replica: each half once
            half = len(work.positions) // 2
            for part in (work.positions[half:], work.positions[:half]):
                self.queue.appendleft(_Work(work.seq, part, split=True, crashes=work.crashes))
        else:
            rows = _subset(window[work.seq], work.positions)
            error = (
                f"the Ray replica running this row died all {work.crashes} times it ran it (last: {reason}); "
                "the rest of its batch was written: the backend crashes on this input"
            )
            self._record(work, self.plan.runner.crashed(self.model_name, rows, error))

    def _record(self, work: _Work, result: BatchResult) -> None:
        self.parts[work.seq].append((work.positions, result))
        self.left[work.seq] -= len(work.positions)

    def stop(self) -> None:
        """Stop every actor of the run (the cache's last: each batch's writes were committed before its result)."""
        for slot in list(self.slots):
            self._drop(slot)
        if self.keeper is not None:
            try:  # the writes it has queued are committed first (paid-for generations a rerun reuses)
                self.ray.get(self.keeper.tally.remote(0, 0), timeout=30)
            except Exception:  # (gone already, or stuck: nothing more to save)
                pass
            self.ray.kill(self.keeper, no_restart=True)
            self.keeper = None


def _check_no_children(recipe: Any) -> None:
    """A replica's cache is reached through Ray: an ``in_process`` child (started by the replica, outside
    Ray) could not reach it."""
    stages = [recipe] if recipe.label is None else [recipe, recipe.label]
    if any(child for stage in stages for _spec, child in stage.specs()):
        raise ConfigError(
            "in_process = true on Ray with a cache: each Ray replica is a process of its own already, and an "
            "in_process child could not reach the run's cache; set in_process = false (or run with --no-cache)"
        )


def _subset(batch: Batch, positions: list[int]) -> Batch:
    return Batch(
        [batch.indices[p] for p in positions], [batch.rows[p] for p in positions], [batch.where[p] for p in positions]
    )
