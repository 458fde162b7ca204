"""Running a recipe over its input: batches, crash-safe output, failure records, resume.

``run_recipe(recipe, options)`` reads the input, skips the rows the output
already holds (see :mod:`fnlabel.io` for why line ``i`` is row ``i``), builds
the LLM only if something is left to do, and runs the rest in batches of
``batch_size``: each batch's failure records and then its output lines are
appended and fsynced before the next batch starts.

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
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from itertools import islice
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import BackendError, ConfigError, InputError
from fnlabel.io import InputData, JsonlLog, normalized, output_lock, read_input, to_json_line, write_parquet
from fnlabel.llm import RowFailure, max_concurrency

__all__ = ["RunOptions", "Summary", "run_recipe", "resolve_options", "GENERATOR_KEY"]

#: where a two-stage run keeps the generator's LLMOutputs (its "outputs" are the labeller's)
GENERATOR_KEY = "generator_outputs"


@attrs.frozen(kw_only=True)
class RunOptions:
    """A run's settings: ``[run]`` of the recipe with command-line overrides applied."""

    input: str
    output: Path
    num_generations: int = 1
    limit: int | None = None
    batch_size: int = 16
    max_failures: int | None = None
    retry_failed: bool = False
    output_key: str = "outputs"

    @property
    def journal(self) -> Path:
        """The JSONL file written as the run goes (the output itself unless it is Parquet)."""
        return self.output.with_name(self.output.name + ".jsonl") if self.parquet else self.output

    @property
    def parquet(self) -> bool:
        return self.output.suffix.lower() == ".parquet"

    @property
    def failures_path(self) -> Path:
        return self.output.with_name(self.output.name + ".failures.jsonl")


def _positive(name: str, value: Any, low: int = 1) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def resolve_options(recipe: Any, recipe_path: str | Path | None = None, **overrides: Any) -> RunOptions:
    """Merge ``recipe.run`` with non-None ``overrides`` (input, output, num_generations, ...)."""
    run = recipe.run
    given = {k: v for k, v in overrides.items() if v is not None}
    source = given.get("input", run.input)
    if source is None:
        raise InputError("no input: set input in the recipe's [run] table or pass --input PATH")
    output = given.get("output", run.output)
    if output is None:
        if recipe_path is None:
            raise InputError("no output: set output in the recipe's [run] table or pass --output PATH")
        output = Path("out") / f"{Path(recipe_path).stem}.jsonl"
    opts = RunOptions(
        input=str(source),
        output=Path(output),
        num_generations=_positive("num_generations", given.get("num_generations", run.num_generations)),
        limit=_positive("limit", given.get("limit", run.limit)),
        batch_size=_positive("batch_size", given.get("batch_size", run.batch_size)),
        max_failures=_positive("max_failures", given.get("max_failures", run.max_failures), 0),
        retry_failed=bool(given.get("retry_failed", False)),
        output_key=run.output_key,
    )
    if opts.output.suffix.lower() not in (".jsonl", ".parquet"):
        raise InputError(f"{opts.output}: output must end in .jsonl (or .parquet)")
    if not opts.input.startswith("hf:") and Path(opts.input).resolve() in (
        opts.output.resolve(), opts.journal.resolve(), opts.failures_path.resolve()
    ):  # its rows would read as rows already done
        raise InputError(f"{opts.output}: the output is the input file ({opts.input}): pass another --output")
    return opts


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


Progress = Callable[[int, int, int], None]


def _batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _empty(model_name: str, k: int) -> list[dict[str, Any]]:
    return [{"model_name": model_name, "prompt_used": None, "raw_output": None, "parsed_output": None}] * k


def _count(outputs: list[list[dict[str, Any]]]) -> int:
    return sum(o.get("raw_output") is not None for outs in outputs for o in outs)


class _Job:
    """One run's state: the input, the two logs, the LLM (built on first use)."""

    def __init__(self, recipe: Any, opts: RunOptions, wrap: Callable[[Any], Any] | None, cache: Any = None) -> None:
        self.recipe, self.opts, self.wrap, self.cache = recipe, opts, wrap, cache
        self.feed = [k for k, _ in recipe.label_inputs()]
        self.added = [opts.output_key, *([GENERATOR_KEY, *self.feed] if recipe.label is not None else [])]
        if opts.output_key in self.added[1:]:  # the labeller's outputs would overwrite the generator's
            raise ConfigError(
                f"[run] output_key = {opts.output_key!r} is also where a two-stage run writes "
                f"{'the generator outputs' if opts.output_key == GENERATOR_KEY else 'what it feeds the labeller'}: "
                "choose another output_key"
            )
        self.data: InputData = read_input(opts.input, opts.limit)
        self._check_keys()
        self.out = JsonlLog(opts.journal)
        self.fails = JsonlLog(opts.failures_path)
        self._check_resume()
        self.llm: Any = None

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
        label = self.recipe.label
        first = GENERATOR_KEY if label is not None else self.opts.output_key
        stages = [(first, self.opts.num_generations, "--num-generations {n} (or [run] num_generations = {n})")]
        if label is not None:
            stages.append((self.opts.output_key, label.num_generations, "[label] num_generations = {n}"))
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

    def get_llm(self) -> Any:
        if self.llm is None:
            llm = self.recipe.build(self.cache) if self.cache is not None else self.recipe.build()
            self.llm = self.wrap(llm) if self.wrap is not None else llm
        return self.llm

    def run_batch(self, rows: list[int]) -> tuple[list[str], list[dict[str, Any]], int, str | None]:
        """Output lines, failure records, generations made, and the batch's error if it raised."""
        data, k, key = self.data, self.opts.num_generations, self.opts.output_key
        inputs = [data.rows[i] for i in rows]
        llm = self.get_llm()
        objs: list[dict[str, Any]]
        batch_error = None
        try:
            if hasattr(llm, "run_stages"):
                res = llm.run_stages(inputs, k)
                objs = []
                for j, row in enumerate(inputs):
                    fed = res.label_rows[j] or {**row, **{f: [] for f in self.feed}}
                    objs.append({**fed, key: res.labelled[j], GENERATOR_KEY: res.generated[j]})
                gens = _count(res.generated) + _count(res.labelled)
                if res.label_error is not None:  # the generations are written; the labels are failures
                    batch_error = f"labeller: {type(res.label_error).__name__}: {res.label_error}"
            else:
                res = llm.run(inputs, k)
                objs = [{**row, key: outs} for row, outs in zip(inputs, res.outputs)]
                gens = _count(res.outputs)
            failures = list(res.failures)
        except Exception as exc:  # a whole call failed: its rows are recorded, the run goes on
            batch_error = f"{type(exc).__name__}: {exc}"
            if self.recipe.label is not None:  # the shape of a row the generator failed: not labelled
                name = getattr(getattr(llm, "generator", llm), "model_name", None) or "unknown"
                objs = [{**row, **{f: [] for f in self.feed}, key: [], GENERATOR_KEY: _empty(name, k)}
                        for row in inputs]
            else:
                name = getattr(llm, "model_name", None) or "unknown"
                objs = [{**row, key: _empty(name, k)} for row in inputs]
            failures = [RowFailure(j, None, "backend", batch_error) for j in range(len(rows))]
            gens = 0
        records = [
            {"row": rows[f.row], "where": data.where[rows[f.row]], "generation": f.generation,
             "stage": f.stage, "error": f.error}
            for f in failures
        ]
        return [to_json_line(o) for o in objs], records, gens, batch_error

    def results(
        self, todo: list[int]
    ) -> Iterator[tuple[list[int], tuple[list[str], list[dict[str, Any]], int, str | None]]]:
        """Each batch of ``todo`` with its :meth:`run_batch` result, in order (an engine may override it).

        Batches are computed while the caller writes earlier ones, so the model never waits for
        the output file. A local model runs one batch at a time (one ahead of the writer); an LLM
        with ``max_concurrency`` c > 1 (HTTP backends) runs ``ceil(c / batch_size) + 1`` batches
        at once, so about c requests stay in flight and a slow request holds up only its own
        batch's turn to be written. Results are still yielded, and written, in order.
        """
        batches = list(_batches(todo, self.opts.batch_size))
        if len(batches) < 2:
            for batch in batches:
                yield batch, self.run_batch(batch)
            return
        concurrency = max_concurrency(self.get_llm())  # built once, here, before any worker thread
        window = 1 if concurrency <= 1 else -(-concurrency // self.opts.batch_size) + 1
        workers = ThreadPoolExecutor(window, thread_name_prefix="fnlabel-batch")
        submitted: list[Any] = []

        def submit(batch: list[int]) -> tuple[list[int], Any]:
            submitted.append(workers.submit(self.run_batch, batch))
            return batch, submitted[-1]

        try:
            queued = iter(batches)
            pending = deque(submit(b) for b in islice(queued, window))
            while pending:
                current, future = pending.popleft()
                result = future.result()
                following = next(queued, None)
                if following is not None:
                    pending.append(submit(following))
                yield current, result
        finally:  # a stopped run (max failures, Ctrl-C) does not start another batch
            workers.shutdown(wait=False, cancel_futures=True)
            if window == 1:  # see settle
                self.ahead = [f for f in submitted if not f.done()]

    def settle(self, log: Callable[[str], None] | None = None) -> None:
        """Before :meth:`close`: wait for a batch a local model still computes ahead of a stopped run.

        An HTTP backend's close() fails its calls in flight, so they need no wait; a local model
        must not be freed under a running batch (llama.cpp crashes). A KeyboardInterrupt while
        waiting propagates: the model is then not closed, and is left to the process's exit.
        """
        ahead = [f for f in getattr(self, "ahead", ()) if not f.done()]
        if ahead:
            if log is not None:
                log("stopping: the batch in flight finishes first (Ctrl-C again to quit at once)")
            wait(ahead)

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()


def _row_of(line: str) -> int:
    try:
        return int(json.loads(line)["row"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # an unreadable record is dropped on resume


def run_recipe(
    recipe: Any,
    opts: RunOptions,
    *,
    progress: Progress | None = None,
    wrap_llm: Callable[[Any], Any] | None = None,
    log: Callable[[str], None] | None = None,
    cache: Any = None,
) -> Summary:
    """Run ``recipe`` with ``opts``; returns a :class:`Summary` (``stopped`` set if max_failures hit).

    ``cache`` is a per-sample cache store or file path (``recipe.build(cache)``);
    ``wrap_llm`` wraps the built LLM. With ``[run] engine = "ray"`` the batches run
    on Ray actors (:mod:`fnlabel.ray_engine`).

    Examples:
        >>> import tempfile, fnlabel
        >>> from fnlabel.runner import resolve_options, run_recipe
        >>> recipe = fnlabel.load_recipe("recipes/echo.toml")
        >>> out = tempfile.mkdtemp() + "/out.jsonl"
        >>> run_recipe(recipe, resolve_options(recipe, output=out, limit=3)).rows_done
        3
    """
    with output_lock(opts.output):  # one run at a time writes an output (and its journal)
        return _run(recipe, opts, progress, wrap_llm, log, cache)


def _run(recipe: Any, opts: RunOptions, progress: Progress | None, wrap_llm: Callable[[Any], Any] | None,
         log: Callable[[str], None] | None, cache: Any) -> Summary:
    started = time.monotonic()
    if getattr(recipe.run, "engine", "local") == "ray":  # the same run, with the LLM on Ray actors
        from fnlabel.ray_engine import RayJob

        job: _Job = RayJob(recipe, opts, wrap_llm, cache)
    else:
        job = _Job(recipe, opts, wrap_llm, cache)
    summary = Summary(opts.output, opts.failures_path, rows_total=len(job.data.rows))
    if opts.retry_failed:
        todo = sorted({_row_of(line) for line in job.fails.lines()} - {1 << 62})
        todo = [r for r in todo if r < min(job.out.count, len(job.data.rows))]
    else:
        todo = list(range(job.out.count, len(job.data.rows)))
    if not job.data.rows and not opts.journal.exists():
        opts.journal.touch()  # an empty input gives an empty output, which a next step can read
    failed: set[int] = set()
    if progress is not None and todo:
        progress(0, len(todo), 0)
    try:
        for batch, (lines, records, gens, batch_error) in job.results(todo):
            if batch_error and summary.rows_run == 0:
                # nothing has worked yet: a model that cannot load, a server that is down, a bad key.
                # Stop before writing, rather than record every row of the input as failed.
                raise BackendError(
                    f"the first batch ({job.data.locate(batch[0])} to {job.data.where[batch[-1]]}) failed as a "
                    f"whole, so the run stopped before writing it: {batch_error}"
                )
            if batch_error and log is not None:
                log(f"rows {job.data.where[batch[0]]}..{job.data.where[batch[-1]]} failed: {batch_error}")
            if opts.retry_failed:
                _replace(job, dict(zip(batch, lines)), set(batch), records)
            else:
                job.fails.append(to_json_line(r) for r in records)  # failures first: see fnlabel.io
                job.out.append(lines)
            summary.rows_run += len(batch)
            summary.generations += gens
            failed.update(r["row"] for r in records)
            summary.failures.extend(records[: max(0, 20 - len(summary.failures))])
            if progress is not None:
                progress(summary.rows_run, len(todo), summary.generations)
            if opts.max_failures is not None and len(failed) > opts.max_failures:
                last = records[-1]["error"] if records else ""
                summary.stopped = (
                    f"stopped: {len(failed)} rows failed, more than --max-failures {opts.max_failures} "
                    f"(last error: {last}); see {opts.failures_path}"
                )
                break
    finally:
        job.settle(log)
        job.close()
        summary.failed_rows = len(failed)
        summary.rows_done = min(job.out.count, len(job.data.rows))
        summary.left = len(job.data.rows) - summary.rows_done
        summary.elapsed = time.monotonic() - started
    if opts.parquet and summary.left == 0 and summary.stopped is None:
        write_parquet(opts.journal, opts.output)
    elif opts.parquet:  # the rows so far are in the JSONL journal; the Parquet file comes at the end
        summary.output = opts.journal
    return summary


def _replace(job: _Job, new_lines: dict[int, str], rows: set[int], records: list[dict[str, Any]]) -> None:
    """Retry mode: swap the rows' output lines, then their failure records (each file atomically)."""
    old = job.out.lines()
    job.out.rewrite(new_lines.get(i, line) for i, line in enumerate(old))
    kept = [line for line in job.fails.lines() if _row_of(line) not in rows]
    job.fails.rewrite([*kept, *(to_json_line(r) for r in records)])
