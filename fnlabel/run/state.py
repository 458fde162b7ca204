"""A run's files before any batch: the input scanned, the output it resumes checked, the rows to run.

Nothing per row is kept: the input is read as a stream (once to check every row, then as the
batches need it), and the output it resumes is compared with the input line by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from fnlabel.errors import ConfigError, InputError
from fnlabel.run.batch import GENERATOR_KEY, Batch, BatchRunner
from fnlabel.run.inputs import InputSource, open_input
from fnlabel.run.journal import JsonlLog, normalized, to_json_line
from fnlabel.run.options import RunOptions
from fnlabel.run.retry import UNREADABLE, RetryJournal, row_of

__all__ = ["RunState", "batch_runner", "scan_input", "written_keys"]


def batch_runner(recipe: Any, opts: RunOptions) -> BatchRunner:
    """How the batches of ``recipe`` run with ``opts`` become output lines."""
    feed = tuple(k for k, _ in recipe.label_inputs())
    label = recipe.label

    def prices(pricing: Any) -> Any:  # a Batch API run pays the batch prices
        return pricing.for_batch() if opts.batch_prices and pricing is not None else pricing

    return BatchRunner(
        opts.num_generations,
        opts.output_key,
        feed,
        two_stage=label is not None,
        metadata=opts.metadata,
        pricing=prices(recipe.pricing),
        label_pricing=None if label is None else prices(label.pricing),
    )


def written_keys(recipe: Any, opts: RunOptions) -> list[str]:
    """The keys a run adds to each row: the output key, and (two stages) the generator's outputs and the fed keys."""
    feed = [k for k, _ in recipe.label_inputs()]
    return [opts.output_key, *([GENERATOR_KEY, *feed] if recipe.label is not None else [])]


def scan_input(source: InputSource, added: list[str]) -> int:
    """Read every row once, keeping nothing: the number of rows, or an InputError naming the first bad one
    (not JSON, not an object, or holding a key fnlabel writes, the first of ``added``)."""
    total = 0
    for where, row in source:
        clash = next((k for k in added if k in row), None)
        if clash is not None:
            if clash == added[0]:
                fix = "set output_key in [run] to another name (or rename the column)"
            elif clash == GENERATOR_KEY:
                fix = "it holds the generator's outputs in a two-stage run: rename the column"
            else:
                fix = "it is the generator's outputs fed to the labeller ([label.inputs]): rename the column"
            raise InputError(
                f"{source.locate(where)}: the row already has a key {clash!r}, which fnlabel writes; {fix}"
            )
        total += 1
    return total


class RunState:
    """One run's input, output journal, failures file and retry journal, checked for a resume.

    Opening it reads every input row once (a JSON error, a row that is not an object or that
    already has a key fnlabel writes fails now, before any work, naming the row), merges what an
    interrupted ``--retry-failed`` left, and refuses an output that was written from another input.
    """

    def __init__(self, recipe: Any, opts: RunOptions) -> None:
        self.opts = opts
        self.feed = tuple(k for k, _ in recipe.label_inputs())
        self.two_stage = recipe.label is not None
        self.added = written_keys(recipe, opts)
        if opts.output_key in self.added[1:]:  # the labeller's outputs would overwrite the generator's
            raise ConfigError(
                f"[run] output_key = {opts.output_key!r} is also where a two-stage run writes "
                f"{'the generator outputs' if opts.output_key == GENERATOR_KEY else 'what it feeds the labeller'}: "
                "choose another output_key"
            )
        self.label_generations = recipe.label.num_generations if self.two_stage else None
        self.input = open_input(opts.input, opts.limit)
        self.total = self._scan()
        self.out = JsonlLog(opts.journal)
        self.fails = JsonlLog(opts.failures_path)
        self.retry = RetryJournal(opts.journal)
        self.retry.merge(self.out, self.fails)  # an interrupted retry is finished before anything else
        self._check_resume()

    def _scan(self) -> int:
        return scan_input(self.input, self.added)

    def todo(self) -> Sequence[int]:
        """The rows to run: those past the output's end, or (retry mode) those with a failure record."""
        done = min(self.out.count, self.total)
        if not self.opts.retry_failed:
            return range(done, self.total)
        failed = {row_of(line) for line in self.fails.lines()}
        return sorted(row for row in failed if row < done)  # (UNREADABLE is never < done)

    def batches(self, todo: Sequence[int]) -> Iterator[Batch]:
        """The rows of ``todo`` (in input order), ``batch_size`` at a time, read from the input as they are needed."""
        wanted = iter(todo)
        nxt = next(wanted, None)
        batch = Batch([], [], [])
        for i, (where, row) in enumerate(self.input):
            if nxt is None:
                break
            if i < nxt:
                continue
            batch.indices.append(i)
            batch.rows.append(row)
            batch.where.append(where)
            nxt = next(wanted, None)
            if len(batch.indices) == self.opts.batch_size:
                yield batch
                batch = Batch([], [], [])
        if batch.indices:
            yield batch

    def rows_with_failures(self) -> int:
        """How many rows of the output have failure records."""
        return len({row_of(line) for line in self.fails.lines()} - {UNREADABLE})

    def _check_resume(self) -> None:
        n = self.out.count
        # failure records of rows past the output's end belong to a batch that never landed
        if any(row_of(line) >= n for line in self.fails.lines()):
            self.fails.rewrite(line for line in self.fails.lines() if row_of(line) < n)
        if not n:
            return
        journal, source = self.opts.journal, self.input.source
        if n > self.total:
            raise InputError(
                f"{journal} has {n} lines but the input {source} has only {self.total} rows: the output was "
                "written from another input; pass another --output, or delete "
                f"{journal} (and {self.opts.failures_path}) to start over"
            )
        lines = self.out.lines()
        for i, ((where, row), line) in enumerate(zip(self.input, lines)):
            if not self._same_row(line, row):
                raise InputError(
                    f"{journal} line {i + 1} is not input row {self.input.locate(where)}: the output was written "
                    f"from another input; pass another --output, or delete {journal} (and "
                    f"{self.opts.failures_path}) to start over"
                )
            if i in (0, n - 1):
                self._check_generations(i, json.loads(line))
            if i == n - 1:
                break

    def _same_row(self, line: str, row: dict[str, Any]) -> bool:
        """Whether output ``line`` was written for input ``row`` (its keys first, then what fnlabel added)."""
        prefix = to_json_line(row)[:-2]  # the row's JSON without its closing brace: the line starts with it
        if row and line.startswith(prefix) and line[len(prefix) : len(prefix) + 2] in (", ", "}\n"):
            return True
        try:  # written another way (another key order, escaped text): compare the values
            record = json.loads(line)
            return normalized({k: v for k, v in record.items() if k not in self.added}) == normalized(row)
        except (json.JSONDecodeError, AttributeError):
            return False

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
