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
their lines (the output is rewritten atomically).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import BackendError, ConfigError, InputError
from fnlabel.run.batch import GENERATOR_KEY, BatchResult, BatchRunner
from fnlabel.run.engines import Engine, Log, Plan, make_engine
from fnlabel.run.inputs import InputData, read_input
from fnlabel.run.journal import JsonlLog, normalized, output_lock, to_json_line, write_parquet
from fnlabel.run.options import RunOptions

__all__ = ["RunState", "Summary", "OnProgress", "run_recipe", "batch_runner"]

#: ``progress(rows_done, rows_total, generations)``: called after each batch is written
OnProgress = Callable[[int, int, int], None]

#: the row of a failure record that cannot be read (dropped on resume)
_UNREADABLE = 1 << 62


@attrs.define
class Summary:
    """What a run did (the CLI prints it)."""

    output: Path
    failures_path: Path
    rows_total: int = 0
    rows_done: int = 0
    rows_run: int = 0
    generations: int = 0
    failed_rows: int = 0
    failures: list[dict[str, Any]] = attrs.Factory(list)
    elapsed: float = 0.0
    stopped: str | None = None
    left: int = 0


def batch_runner(recipe: Any, opts: RunOptions) -> BatchRunner:
    """How the batches of ``recipe`` run with ``opts`` become output lines."""
    feed = tuple(k for k, _ in recipe.label_inputs())
    return BatchRunner(opts.num_generations, opts.output_key, feed, two_stage=recipe.label is not None)


class RunState:
    """One run's files: the input rows, the output journal and the failures file, checked for a resume."""

    def __init__(self, recipe: Any, opts: RunOptions) -> None:
        self.opts = opts
        self.feed = tuple(k for k, _ in recipe.label_inputs())
        self.two_stage = recipe.label is not None
        self.added = [opts.output_key, *([GENERATOR_KEY, *self.feed] if self.two_stage else [])]
        if opts.output_key in self.added[1:]:  # the labeller's outputs would overwrite the generator's
            raise ConfigError(
                f"[run] output_key = {opts.output_key!r} is also where a two-stage run writes "
                f"{'the generator outputs' if opts.output_key == GENERATOR_KEY else 'what it feeds the labeller'}: "
                "choose another output_key"
            )
        self.label_generations = recipe.label.num_generations if self.two_stage else None
        self.data: InputData = read_input(opts.input, opts.limit)
        self._check_keys()
        self.out = JsonlLog(opts.journal)
        self.fails = JsonlLog(opts.failures_path)
        self._check_resume()

    def todo(self) -> list[int]:
        """The rows to run: those past the output's end, or (retry mode) those with a failure record."""
        n = len(self.data.rows)
        if not self.opts.retry_failed:
            return list(range(self.out.count, n))
        failed = sorted({_row_of(line) for line in self.fails.lines()} - {_UNREADABLE})
        return [r for r in failed if r < min(self.out.count, n)]

    def _check_keys(self) -> None:
        for i, row in enumerate(self.data.rows):
            clash = next((k for k in self.added if k in row), None)
            if clash is None:
                continue
            if clash == self.opts.output_key:
                fix = "set output_key in [run] to another name (or rename the column)"
            elif clash == GENERATOR_KEY:
                fix = "it holds the generator's outputs in a two-stage run: rename the column"
            else:
                fix = "it is the generator's outputs fed to the labeller ([label.inputs]): rename the column"
            raise InputError(f"{self.data.locate(i)}: the row already has a key {clash!r}, which fnlabel writes; {fix}")

    def _strip(self, record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k not in self.added}

    def _check_resume(self) -> None:
        n, rows = self.out.count, self.data.rows
        # failure records of rows past the output's end belong to a batch that never landed
        kept = [line for line in self.fails.lines() if _row_of(line) < n]
        if len(kept) != self.fails.count:
            self.fails.rewrite(kept)
        if not n:
            return
        checks = [0] if n > len(rows) else sorted({0, n - 1})
        found: dict[int, str] = {}
        for i, line in enumerate(self.out.lines()):
            if i in checks:
                found[i] = line
            if i >= checks[-1]:
                break
        for i in checks:
            try:
                same = i < len(rows) and normalized(self._strip(json.loads(found[i]))) == normalized(rows[i])
            except (json.JSONDecodeError, AttributeError):
                same = False
            if not same:
                row = self.data.locate(i) if i < len(rows) else f"{i} (the input has only {len(rows)} rows)"
                raise InputError(
                    f"{self.opts.journal} line {i + 1} is not input row {row}: "
                    "the output was written from another input; pass another --output, or delete "
                    f"{self.opts.journal} (and {self.opts.failures_path}) to start over"
                )
            self._check_generations(i, json.loads(found[i]))

    def _check_generations(self, i: int, record: dict[str, Any]) -> None:
        """Refuse to resume an output written with another number of generations per row (it would mix them)."""
        first = GENERATOR_KEY if self.two_stage else self.opts.output_key
        stages = [(first, self.opts.num_generations, "--num-generations {n} (or [run] num_generations = {n})")]
        if self.label_generations is not None:
            stages.append((self.opts.output_key, self.label_generations, "[label] num_generations = {n}"))
        for key, asked, setting in stages:
            have = record.get(key)
            if not isinstance(have, list) or len(have) == asked or (key != first and not have):
                continue  # (a row that was not labelled has no labeller outputs)
            n = len(have)
            raise InputError(
                f"{self.opts.journal} line {i + 1} holds {n} generation{'s' if n != 1 else ''} in {key!r}, but "
                f"this run asks for {asked}: rerun with {setting.format(n=n)} to complete this output, or pass "
                "another --output (the per-sample cache keeps the generations already made)"
            )


def _row_of(line: str) -> int:
    try:
        return int(json.loads(line)["row"])
    except (ValueError, KeyError, TypeError):
        return _UNREADABLE  # an unreadable record is dropped on resume


def run_recipe(
    recipe: Any,
    opts: RunOptions,
    *,
    progress: OnProgress | None = None,
    wrap_llm: Callable[[Any], Any] | None = None,
    log: Log | None = None,
    cache: Any = None,
) -> Summary:
    """Run ``recipe`` with ``opts``; returns a :class:`Summary` (``stopped`` set if max_failures hit).

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
    with output_lock(opts.output):  # one run at a time writes an output (and its journal)
        # the engine first: one that cannot run here (Ray not installed) fails before the input is read
        engine = make_engine(recipe.run.engine, Plan(recipe, batch_runner(recipe, opts), cache, wrap_llm))
        try:
            state = RunState(recipe, opts)
        except BaseException:
            engine.close()
            raise
        return _run(state, engine, progress, log)


def _run(state: RunState, engine: Engine, progress: OnProgress | None, log: Log | None) -> Summary:
    opts, started = state.opts, time.monotonic()
    summary = Summary(opts.output, opts.failures_path, rows_total=len(state.data.rows))
    todo = state.todo()
    if not state.data.rows and not opts.journal.exists():
        opts.journal.touch()  # an empty input gives an empty output, which a next step can read
    failed: set[int] = set()
    if progress is not None and todo:
        progress(0, len(todo), 0)
    results = engine.results(state.data, _batches(todo, opts.batch_size))
    try:
        for batch, result in results:
            _write(state, batch, result, summary, log)
            failed.update(r["row"] for r in result.failures)
            if progress is not None:
                progress(summary.rows_run, len(todo), summary.generations)
            if opts.max_failures is not None and len(failed) > opts.max_failures:
                last = result.failures[-1]["error"] if result.failures else ""
                summary.stopped = (
                    f"stopped: {len(failed)} rows failed, more than --max-failures {opts.max_failures} "
                    f"(last error: {last}); see {opts.failures_path}"
                )
                break
    finally:
        results.close()  # a stopped run starts no other batch
        engine.settle(log)
        engine.close()
        summary.failed_rows = len(failed)
        summary.rows_done = min(state.out.count, len(state.data.rows))
        summary.left = len(state.data.rows) - summary.rows_done
        summary.elapsed = time.monotonic() - started
    if opts.parquet and summary.left == 0 and summary.stopped is None:
        write_parquet(opts.journal, opts.output)
    elif opts.parquet:  # the rows so far are in the JSONL journal; the Parquet file comes at the end
        summary.output = opts.journal
    return summary


def _write(state: RunState, batch: list[int], result: BatchResult, summary: Summary, log: Log | None) -> None:
    """Append (or, retrying, replace) one batch's failure records and output lines."""
    data = state.data
    if result.error and summary.rows_run == 0:
        # nothing has worked yet: a model that cannot load, a server that is down, a bad key.
        # Stop before writing, rather than record every row of the input as failed.
        raise BackendError(
            f"the first batch ({data.locate(batch[0])} to {data.where[batch[-1]]}) failed as a "
            f"whole, so the run stopped before writing it: {result.error}"
        )
    if result.error and log is not None:
        log(f"rows {data.where[batch[0]]}..{data.where[batch[-1]]} failed: {result.error}")
    if state.opts.retry_failed:
        _replace(state, dict(zip(batch, result.lines)), set(batch), result.failures)
    else:
        state.fails.append(to_json_line(r) for r in result.failures)  # failures first: see fnlabel.run.journal
        state.out.append(result.lines)
    summary.rows_run += len(batch)
    summary.generations += result.generations
    summary.failures.extend(result.failures[: max(0, 20 - len(summary.failures))])


def _batches(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def _replace(job: RunState, new_lines: dict[int, str], rows: set[int], records: list[dict[str, Any]]) -> None:
    """Retry mode: swap the rows' output lines, then their failure records (each file atomically)."""
    old = job.out.lines()
    job.out.rewrite(new_lines.get(i, line) for i, line in enumerate(old))
    kept = [line for line in job.fails.lines() if _row_of(line) not in rows]
    job.fails.rewrite([*kept, *(to_json_line(r) for r in records)])
