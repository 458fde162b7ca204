"""Running a recipe over its input: batches, crash-safe output, failure records, resume.

``run_recipe(recipe, options)`` reads the input, skips the rows the output
already holds (see :mod:`fnlabel.run.journal` for why line ``i`` is row ``i``), builds
the LLM only if something is left to do, and runs the rest in batches of
``batch_size`` on the recipe's engine (:mod:`fnlabel.run.engines`): each batch's
failure records and then its output lines are appended and fsynced before the
next batch is written.

If the first batch of a run raises as a whole (a model that cannot load, a server
that is down, a bad key), the run stops with :class:`~fnlabel.errors.BackendError`
before writing anything. Later failures (a row's input is unusable, a generation
failed after the backend's retries, a parse error, or a whole batch raised) are written to
``<output>.failures.jsonl`` as ``{"row", "where", "generation", "stage", "error"}``.
The row still gets its output line (``raw_output``/``parsed_output`` null where it
failed). ``retry_failed=True`` reruns only the rows listed there and replaces
their lines and records (through a side journal merged once: :mod:`fnlabel.run.retry`).
Memory does not grow with the input: rows are read as the batches need them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import BATCH_PENDING, BackendError, ConfigError, InputError
from fnlabel.run.batch import Batch, BatchResult, Usage, usd
from fnlabel.run.engines import Engine, Log, Plan, make_engine
from fnlabel.run.journal import batch_ledger, open_batches, output_lock, to_json_line
from fnlabel.run.options import RunOptions
from fnlabel.run.parquet import write_parquet
from fnlabel.run.state import RunState, batch_runner

__all__ = ["Summary", "Progress", "OnProgress", "run_recipe"]


@attrs.frozen
class Progress:
    """Where a run stands after a batch is written (what a progress display shows).

    Attributes:
        rows_done, rows_todo: rows of this run written so far, and the rows it has to do.
        generations: generations made (failed ones not counted).
        failed_rows: this run's rows with failures so far.
        usage: tokens, generations cut at ``max_new_tokens`` and cost so far.
        elapsed: seconds since the run started.
    """

    rows_done: int
    rows_todo: int
    generations: int
    failed_rows: int
    usage: Usage
    elapsed: float


#: ``progress(Progress)``: called when a run starts (``rows_done == 0``) and after each batch is written
OnProgress = Callable[[Progress], None]


@attrs.define
class Summary:
    """What a run did (the CLI prints it).

    ``failed_rows`` counts this run's rows with failures; ``rows_with_failures`` every row of the
    output that has failure records after the run (earlier runs' included). ``usage`` sums the
    ``metadata`` of this run's outputs: tokens, generations cut at ``max_new_tokens``, cost.
    """

    output: Path
    failures_path: Path
    rows_total: int = 0
    rows_done: int = 0
    rows_run: int = 0
    generations: int = 0
    failed_rows: int = 0
    rows_with_failures: int = 0
    failures: list[dict[str, Any]] = attrs.Factory(list)
    elapsed: float = 0.0
    stopped: str | None = None
    left: int = 0
    usage: Usage = Usage()
    #: batch mode: rows not written because a generation of theirs (or of a row before them) is pending
    pending_rows: int = 0
    #: Ray: rows recorded as failed because they killed the replica running them, every time
    crashed_rows: int = 0

    def progress(self, todo: int, elapsed: float) -> Progress:
        return Progress(self.rows_run, todo, self.generations, self.failed_rows, self.usage, elapsed)


def run_recipe(
    recipe: Any,
    opts: RunOptions,
    *,
    progress: OnProgress | None = None,
    wrap_llm: Callable[[Any], Any] | None = None,
    log: Log | None = None,
    cache: Any = None,
) -> Summary:
    """Run ``recipe`` with ``opts``; returns a :class:`Summary` (``stopped`` set if max_failures or max_cost hit).

    ``cache`` is a per-sample cache store or file path (``recipe.build(cache)``);
    ``wrap_llm`` wraps the built LLM. ``[run] engine`` names the engine that computes the
    batches (``"ray"``: Ray actors, see :mod:`fnlabel.run.ray`).

    Examples:
        >>> import tempfile, fnlabel
        >>> from fnlabel.run import resolve_options, run_recipe
        >>> recipe = fnlabel.load_recipe("recipes/echo.toml")
        >>> out = tempfile.mkdtemp() + "/out.jsonl"
        >>> run_recipe(recipe, resolve_options(recipe, output=out, limit=3)).rows_done
        3
    """
    _check_batch_mode(opts, wrap_llm)
    # one run at a time writes a journal: the lock is the file written (an .parquet output's .jsonl too)
    recipe.register_secrets()  # the keys its backends read are masked in what this run writes
    with output_lock(opts.journal):
        # the engine first: one that cannot run here (Ray not installed) fails before the input is read
        engine = make_engine(recipe.run.engine, Plan(recipe, batch_runner(recipe, opts), cache, wrap_llm))
        try:
            state = RunState(recipe, opts)
        except BaseException:
            engine.close()
            raise
        return _run(state, engine, progress, log)


def _check_batch_mode(opts: RunOptions, wrap_llm: Any) -> None:
    """Batch mode runs through fnlabel.batches; a run of an output whose batches are open would pay twice."""
    if opts.batch and wrap_llm is None:
        raise ConfigError(
            "[run] batch = true: a batch-mode run goes through the Batch API: run it with `fnlabel run --batch` "
            "(or fnlabel.batches.run_batch)"
        )
    running = [] if opts.batch else open_batches(opts.output)
    if running:
        raise InputError(
            f"{opts.output} has {len(running)} Batch API batches whose results are not yet collected "
            f"({', '.join(running[:3])}): rerun with --batch to collect them; or delete "
            f"{batch_ledger(opts.output)} to forget them (their requests would be paid for twice)"
        )


def _run(state: RunState, engine: Engine, progress: OnProgress | None, log: Log | None) -> Summary:
    opts, started = state.opts, time.monotonic()
    summary = Summary(opts.output, opts.failures_path, rows_total=state.total)
    todo = state.todo()
    if not state.total and not opts.journal.exists():
        opts.journal.touch()  # an empty input gives an empty output, which a next step can read
    if progress is not None and todo:
        progress(summary.progress(len(todo), 0.0))
    results = engine.results(state.batches(todo))
    blocked = False  # batch mode: a row before is pending, so (in order) nothing more is written
    try:
        for batch, result in results:
            if opts.batch:  # a row is written once its batch requests are all answered
                batch, result, blocked = _ready(batch, result, blocked, opts.retry_failed, summary)
            _write(state, batch, result, summary, log)
            if progress is not None:
                progress(summary.progress(len(todo), time.monotonic() - started))
            summary.stopped = _stop(summary, result, opts)
            if summary.stopped is not None:
                break
    finally:
        results.close()  # a stopped run starts no other batch
        engine.settle(log, interrupted=isinstance(sys.exc_info()[1], KeyboardInterrupt))
        engine.close()
        state.retry.merge(state.out, state.fails)  # (retry mode: the retried rows' lines, swapped in once)
        summary.rows_done = min(state.out.count, state.total)
        summary.left = state.total - summary.rows_done
        summary.elapsed = time.monotonic() - started
    summary.rows_with_failures = state.rows_with_failures()
    if opts.parquet and summary.left == 0 and summary.stopped is None:
        write_parquet(opts.journal, opts.output)
    elif opts.parquet:  # the rows so far are in the JSONL journal; the Parquet file comes at the end
        summary.output = opts.journal
    return summary


def _ready(
    batch: Batch, result: BatchResult, blocked: bool, any_order: bool, summary: Summary
) -> tuple[Batch, BatchResult, bool]:
    """The rows of a batch-mode batch that can be written: those before the first pending row (retrying,
    which writes rows by index: every row not pending); and whether the rows after must wait."""
    pending = {f["row"] for f in result.failures if f["error"] == BATCH_PENDING}
    if not pending and not blocked:
        return batch, result, False
    if any_order:
        keep = [j for j, i in enumerate(batch.indices) if i not in pending]
    else:
        first = next((j for j, i in enumerate(batch.indices) if i in pending), len(batch.indices))
        keep = [] if blocked else list(range(first))
        blocked = True
    summary.pending_rows += len(batch.indices) - len(keep)
    rows = [batch.indices[j] for j in keep]
    sub = Batch(rows, [batch.rows[j] for j in keep], [batch.where[j] for j in keep])
    return sub, result.only(keep, rows), blocked


def _stop(summary: Summary, result: BatchResult, opts: RunOptions) -> str | None:
    """Why the run stops after this batch (``--max-failures``, ``--max-cost``), or None."""
    if opts.max_failures is not None and summary.failed_rows > opts.max_failures:
        last = result.failures[-1]["error"] if result.failures else ""
        return (
            f"stopped: {summary.failed_rows} rows failed, more than --max-failures {opts.max_failures} "
            f"(last error: {last}); see {opts.failures_path}"
        )
    cost = summary.usage.cost
    if opts.max_cost is not None and cost is not None and cost > opts.max_cost:
        return (
            f"stopped: the run has cost {usd(cost)}, more than --max-cost {opts.max_cost:g} "
            "(at the recipe's [pricing]); everything done so far is kept: rerun to go on"
        )
    return None


def _write(state: RunState, batch: Batch, result: BatchResult, summary: Summary, log: Log | None) -> None:
    """Append one batch's failure records and output lines (retrying: to the retry journal)."""
    where, locate = batch.where, state.input.locate
    if not where:  # (batch mode: none of its rows is ready)
        return
    if result.error and summary.rows_run == 0:
        # nothing has worked yet: a model that cannot load, a server that is down, a bad key.
        # Stop before writing, rather than record every row of the input as failed.
        raise BackendError(
            f"the first batch ({locate(where[0])} to {where[-1]}) failed as a "
            f"whole, so the run stopped before writing it: {result.error}"
        )
    if result.error and log is not None:
        log(f"rows {where[0]}..{where[-1]} failed: {result.error}")
    if state.opts.retry_failed:
        state.retry.append(batch.indices, result.lines, result.failures)
    else:
        state.fails.append(to_json_line(r) for r in result.failures)  # failures first: see fnlabel.run.journal
        state.out.append(result.lines)
    summary.rows_run += len(batch.indices)
    summary.generations += result.generations
    summary.usage += result.usage
    summary.failed_rows += len({r["row"] for r in result.failures})  # (batches never share a row)
    summary.crashed_rows += len({r["row"] for r in result.failures if r["stage"] == "replica"})
    summary.failures.extend(result.failures[: max(0, 20 - len(summary.failures))])
