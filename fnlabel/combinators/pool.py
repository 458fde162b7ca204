"""``pooled``: spread each input's generations over several LLMs.

For ``num_generations = n`` and ``k`` members, member ``j`` makes
``n // k + (1 if j < n % k else 0)`` generations of every input: a fixed,
deterministic split (reruns ask the same member for the same generation).
Members with no share are not called; the others run concurrently through
their ``submit``. Outputs are merged per input in member order, so generation
``g`` of the pool is always made by the same member, and each LLMOutput keeps
its member's ``model_name``.

``pooled(members, by="rows")`` spreads each call's *rows* instead: member ``j`` gets a
contiguous share of them (the same split) with every generation, so identical members (e.g.
``in_process`` children of one HTTP backend, :func:`~fnlabel.combinators.process.in_processes`)
share the work of one call, and the outputs come back in input order.

Failure semantics: a member that raises (backend error, dead in_process child,
...) loses only its own share. Its generations of every row come back as empty
outputs (``raw_output=None``) and as ``RowFailure(stage="backend")`` entries in
``run``'s failures; the other members' outputs are kept. Only when every
member called raises does the call raise (as a single LLM would).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import attrs

from fnlabel.errors import BackendError, ConfigError
from fnlabel.llm import LLMBase, as_rows, check_call
from fnlabel.types import Input, LLMLike, LLMOutput, RowFailure, RunResult, Task, is_llm_like
from fnlabel.validators import check_one_of

__all__ = ["pooled", "Pooled", "split_generations"]

log = logging.getLogger("fnlabel")


def split_generations(n: int, k: int) -> list[int]:
    """How many of ``n`` generations each of ``k`` members makes (the first ``n % k`` get one more).

    Examples:
        >>> split_generations(5, 3)
        [2, 2, 1]
        >>> split_generations(1, 3)
        [1, 0, 0]
    """
    base, extra = divmod(n, k)
    return [base + (j < extra) for j in range(k)]


def _settle_all(futures: Sequence[Future[Any]], combine: Callable[[list[Any]], Any]) -> Future[Any]:
    """A Future of ``combine(outcomes)`` once every Future is done; an outcome is a result or an exception."""
    done: Future[Any] = Future()
    outcomes: list[Any] = [None] * len(futures)
    left = [len(futures)]
    lock = threading.Lock()

    def settle(i: int, fut: Future[Any]) -> None:
        outcome = BackendError("cancelled") if fut.cancelled() else fut.exception()
        if outcome is None:
            outcome = fut.result()
        with lock:
            outcomes[i] = outcome
            left[0] -= 1
            if left[0]:
                return
        try:
            done.set_result(combine(outcomes))
        except BaseException as err:  # a failed combine must fail the Future, never hang it
            done.set_exception(err)

    for i, fut in enumerate(futures):
        fut.add_done_callback(functools.partial(settle, i))
    return done


def _failed_future(exc: BaseException) -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_exception(exc)
    return fut


@attrs.frozen(eq=False)
class Pooled(LLMBase):
    """Several LLMs sharing each input's generations. Make one with :func:`pooled`.

    Calling it returns the nested outputs list (it blocks, like a plain LLM; the
    members still run concurrently). ``submit`` returns a Future of
    :class:`~fnlabel.llm.RunResult`, so a Pooled can itself be pooled or threaded.
    """

    members: tuple[LLMLike, ...]
    by: str = "generations"

    @property
    def task(self) -> Task:
        return self.members[0].task

    @property
    def model_name(self) -> str:
        return "pooled(" + ", ".join(str(m.model_name) for m in self.members) + ")"

    @property
    def max_concurrency(self) -> int:
        """By generations: the smallest member's (a call reaches every member with a share); by rows: their sum."""
        values = [m.max_concurrency for m in self.members]
        return sum(values) if self.by == "rows" else min(values)

    def map_inner(self, change: Callable[[Any], Any]) -> Any:
        """The pool with ``change`` applied inside every member (used by with_prompt_format and cached)."""
        return pooled([m.map_inner(change) for m in self.members], by=self.by)

    def submit(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> Future[RunResult]:
        """Start every member with a share; a Future of the merged :class:`~fnlabel.llm.RunResult`.

        Member ``j`` is asked for the generation indices of its share (``first_generation=``),
        so members that share a model and seed (or a cache) make different generations.
        """
        k, start = check_call(num_generations, first_generation)
        rows = list(as_rows(inputs))
        if self.by == "rows":
            return self._submit_rows(rows, k, start)
        shares = split_generations(k, len(self.members))
        calls: list[tuple[int, int, int]] = []  # (member, first pooled generation, share)
        futures: list[Future[Any]] = []
        offset = 0
        for j, (member, share) in enumerate(zip(self.members, shares)):
            if share:
                try:
                    futures.append(member.submit(rows, share, first_generation=start + offset))
                except Exception as exc:  # a member that cannot even start loses only its share
                    futures.append(_failed_future(exc))
                calls.append((j, offset, share))
            offset += share
        return _settle_all(futures, lambda outcomes: self._merge(len(rows), calls, outcomes))

    def _submit_rows(self, rows: list[Input], k: int, start: int) -> Future[RunResult]:
        """By rows: member ``j`` runs its contiguous share of ``rows`` with all ``k`` generations."""
        futures: list[Future[Any]] = []
        spans: list[tuple[int, int, int]] = []  # (member, first row, rows)
        first = 0
        for j, (member, share) in enumerate(zip(self.members, split_generations(len(rows), len(self.members)))):
            if share:
                try:
                    futures.append(member.submit(rows[first : first + share], k, first_generation=start))
                except Exception as exc:  # a member that cannot even start loses only its rows
                    futures.append(_failed_future(exc))
                spans.append((j, first, share))
            first += share
        return _settle_all(futures, lambda outcomes: self._merge_rows(len(rows), k, spans, outcomes))

    def _merge_rows(self, n_rows: int, k: int, spans: list[tuple[int, int, int]], outcomes: list[Any]) -> RunResult:
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors and len(errors) == len(outcomes):
            raise errors[0]
        outputs: list[list[LLMOutput]] = []
        failures: list[RowFailure] = []
        for (j, first, share), outcome in zip(spans, outcomes):
            if isinstance(outcome, RunResult) and len(outcome.outputs) != share:
                outcome = BackendError(f"returned {len(outcome.outputs)} rows for {share} inputs")
            if isinstance(outcome, RunResult):
                outputs.extend(outcome.outputs)
                failures.extend(attrs.evolve(f, row=f.row + first) for f in outcome.failures)
                continue
            msg = f"pooled member {j} ({self._name(j)}) failed: {type(outcome).__name__}: {outcome}"
            log.error("%s; its %d row(s) are reported as failures", msg, share)
            empty: LLMOutput = {
                "model_name": self._name(j),
                "prompt_used": None,
                "raw_output": None,
                "parsed_output": None,
            }
            outputs.extend([dict(empty) for _ in range(k)] for _ in range(share))  # type: ignore[misc]
            failures.extend(RowFailure(first + i, None, "backend", msg) for i in range(share))
        return RunResult(outputs, tuple(failures))

    def _merge(self, n_rows: int, calls: list[tuple[int, int, int]], outcomes: list[Any]) -> RunResult:
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if len(errors) == len(outcomes):
            if len(errors) == 1:
                raise errors[0]
            detail = "; ".join(
                f"member {j} ({self._name(j)}): {type(e).__name__}: {e}" for (j, _, _), e in zip(calls, errors)
            )
            raise BackendError(f"pooled: every member failed: {detail}") from errors[0]
        outputs: list[list[LLMOutput]] = [[] for _ in range(n_rows)]
        failures: list[RowFailure] = []
        whole_row: set[RowFailure] = set()
        for (j, offset, share), outcome in zip(calls, outcomes):
            if isinstance(outcome, RunResult) and len(outcome.outputs) != n_rows:
                outcome = BackendError(f"returned {len(outcome.outputs)} rows for {n_rows} inputs")
            if not isinstance(outcome, RunResult):
                msg = f"pooled member {j} ({self._name(j)}) failed: {type(outcome).__name__}: {outcome}"
                log.error("%s; its %d generation(s) of each of %d row(s) are reported as failures", msg, share, n_rows)
                empty: LLMOutput = {
                    "model_name": self._name(j),
                    "prompt_used": None,
                    "raw_output": None,
                    "parsed_output": None,
                }
                for i in range(n_rows):
                    outputs[i].extend(dict(empty) for _ in range(share))  # type: ignore[misc]
                    failures.extend(RowFailure(i, offset + g, "backend", msg) for g in range(share))
                continue
            for i, row_out in enumerate(outcome.outputs):
                outputs[i].extend(row_out)
            for f in outcome.failures:
                if f.generation is None:  # a bad row fails the same way for every member: report it once
                    if f not in whole_row:
                        whole_row.add(f)
                        failures.append(f)
                else:
                    failures.append(attrs.evolve(f, generation=f.generation + offset))
        failures.sort(key=lambda f: (f.row, -1 if f.generation is None else f.generation))
        return RunResult(outputs, tuple(failures))

    def _name(self, j: int) -> str:
        try:
            return str(self.members[j].model_name)
        except Exception:  # e.g. an in_process child that died before it loaded
            return f"member {j}"

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> list[list[LLMOutput]]:
        """``num_generations`` outputs per input, spread over the members (blocks)."""
        return self.run(inputs, num_generations).outputs

    def close(self) -> None:
        """Close every member (all of them, even when one raises; then that error is raised)."""
        error: BaseException | None = None
        for member in self.members:
            try:
                member.close()
            except BaseException as exc:  # the other members' children and clients must still be released
                log.error("pooled: closing member %s failed: %s: %s", member, type(exc).__name__, exc)
                error = error or exc
        if error is not None:
            raise error


def _check_compatible(members: list[Any]) -> None:
    ref = members[0].task
    for j, member in enumerate(members[1:], start=1):
        task = member.task
        for attr in ("input_keys", "output_keys"):
            mine, theirs = tuple(getattr(task, attr)), tuple(getattr(ref, attr))
            if set(mine) != set(theirs):
                raise ConfigError(
                    f"pooled members must share their task's input and output keys: member {j} "
                    f"({member.model_name}, task {task.name!r}) has {attr}={mine}, but member 0 "
                    f"({members[0].model_name}, task {ref.name!r}) has {attr}={theirs}; "
                    "pool LLMs built with the same task"
                )


def pooled(members: Iterable[Any], by: str = "generations") -> Any:
    """One LLM that spreads each input's ``num_generations`` over ``members`` (``by="rows"``: each call's rows).

    Member ``j`` of ``k`` makes ``n // k`` generations, plus one of the
    remainder when ``j < n % k``; members with none are not called. Members may
    be plain, threaded or in_process LLMs, in any mix, and run concurrently.
    Their tasks must have the same input and output keys (checked now; an
    in_process member is waited for until it has loaded). A member that raises
    loses only its share: those generations are empty and reported in
    ``run(...).failures``; the call raises only if every member called raised.
    ``pooled([x])`` is ``x``.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> task = tasks.text_generation()
        >>> pool = pooled([llm(task, backends.echo(model_name="a")), llm(task, backends.echo(model_name="b"))])
        >>> [o["model_name"] for o in pool([{"input": "hi"}], num_generations=3)[0]]
        ['a', 'a', 'b']
    """
    if isinstance(members, (str, bytes)) or not isinstance(members, Iterable):
        raise ConfigError(f"pooled needs a list of LLMs, got {type(members).__name__}")
    members = list(members)
    if not members:
        raise ConfigError("pooled needs at least one LLM")
    for j, member in enumerate(members):
        if not is_llm_like(member):
            raise ConfigError(f"pooled member {j} is a {type(member).__name__}, not an LLM (see fnlabel.types.LLMLike)")
    check_one_of(by, "by", ("generations", "rows"))
    if len(members) == 1:
        return members[0]
    _check_compatible(members)
    return Pooled(tuple(members), by)
