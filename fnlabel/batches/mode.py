"""Batch mode end to end: ``fnlabel run --batch``, ``fnlabel batch export`` and ``fnlabel batch import``.

One ``fnlabel run --batch`` invocation:

1. goes over the batches the ledger knows (``OUTPUT.batches.json``): submits what a killed run
   left built, polls the others, and collects the finished ones into the per-sample cache;
   with ``wait``, polls until none is left running;
2. runs the recipe as ``fnlabel run`` does, with a :class:`~fnlabel.batches.requests.Collector`
   in place of the backend call: rows whose generations are all in the cache are written (in
   order), each missing generation becomes a request line (unless a batch already has it);
3. records the new request files in the ledger and submits them.

It returns a :class:`BatchRun`; the CLI exits 5 while batches are running (rerun to collect).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from fnlabel.batches.ledger import Entry, Ledger, ledger_path
from fnlabel.batches.provider import Results, advance, client_for, read_results, submit
from fnlabel.batches.requests import RequestFile, RequestFiles, collecting
from fnlabel.combinators.store import SQLiteStore
from fnlabel.errors import RecipeError
from fnlabel.run import RunOptions, Summary, run_recipe
from fnlabel.run.journal import output_lock
from fnlabel.run.runner import OnProgress
from fnlabel.run.state import RunState, batch_runner

__all__ = ["BatchRun", "run_batch", "export_requests", "import_results", "check_batch_recipe"]

Log = Callable[[str], None]


@attrs.define
class BatchRun:
    """What a batch-mode invocation did: the run's summary, the batches it submitted, those still open."""

    summary: Summary
    submitted: list[Entry]
    running: list[str]
    ledger: Path

    @property
    def requests(self) -> int:
        return sum(e.requests for e in self.submitted)


def check_batch_recipe(recipe: Any) -> None:
    """RecipeError unless every LLM of the recipe is an openai backend running in this process, locally."""
    if recipe.run.engine != "local":
        raise RecipeError("batch mode runs on the local engine: drop --ray (or [run] engine)")
    if recipe.run.processes > 1:
        raise RecipeError("[run] processes: batch mode makes no requests itself; set processes = 1")
    stages = [("", recipe)] + ([("[label] ", recipe.label)] if recipe.label is not None else [])
    for where, stage in stages:
        for spec, child in stage.specs():
            kind = type(spec.backend).kind
            if kind != "openai":
                raise RecipeError(
                    f"{where}backend {kind!r}: batch mode needs the openai backend (an OpenAI-compatible Batch "
                    "API); run without --batch, or use fnlabel batch export to run the requests elsewhere"
                )
            if child:
                raise RecipeError(f"{where}in_process = true: batch mode makes no calls, so set in_process = false")


def _store(cache: Any) -> SQLiteStore:
    if not isinstance(cache, SQLiteStore):
        raise RecipeError("batch mode keeps every result in the per-sample cache: run without --no-cache")
    return cache


def run_batch(
    recipe: Any,
    opts: RunOptions,
    cache: Any,
    *,
    wait: bool = False,
    progress: OnProgress | None = None,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchRun:
    """One ``fnlabel run --batch`` (see the module doc); ``wait``: until every batch is collected."""
    check_batch_recipe(recipe)
    store = _store(cache)
    if opts.max_cost is not None:
        raise RecipeError(
            "--max-cost cannot bound a batch-mode run: every request is submitted at once and its cost is known "
            "when the results come back; drop --max-cost (or run without --batch)"
        )
    opts = attrs.evolve(opts, batch=True, batch_prices=True)
    path = ledger_path(opts.output)
    with output_lock(path):
        ledger = Ledger.open(path)
        submitted: list[Entry] = []
        while True:
            advance(ledger, store, log)
            if wait:
                _wait(ledger, store, log, recipe.run.batch_poll_interval, sleep)
            summary, new = _pass(recipe, opts, ledger, store, progress, log)
            for entry in new:
                submit(ledger, entry, client_for(entry.account))
                log(f"batch {entry.name}: submitted {entry.requests} requests as {entry.batch_id}")
            submitted.extend(new)
            if not (wait and new):
                return BatchRun(summary, submitted, ledger.describe(), path)


def _wait(ledger: Ledger, store: SQLiteStore, log: Log, interval: float, sleep: Callable[[float], None]) -> None:
    """Poll until every batch is collected, logging each batch's state when it changes (Ctrl-C: they go on)."""
    shown: list[str] = []
    while ledger.open_entries():
        states = ledger.describe()
        if states != shown:
            for line in states:
                log(f"waiting: batch {line}")
            shown = states
        sleep(interval)
        advance(ledger, store, log)


def _pass(
    recipe: Any, opts: RunOptions, ledger: Ledger, store: SQLiteStore, progress: OnProgress | None, log: Log
) -> tuple[Summary, list[Entry]]:
    """Run the recipe once: write the rows that are ready, and record the requests still missing."""
    files = RequestFiles(
        ledger.folder, ledger.stem, recipe.run.batch_max_requests, recipe.run.batch_max_bytes, ledger.next_number()
    )
    wrap = collecting(files, ledger.pending(), ledger.failed, opts.retry_failed)
    try:
        summary = run_recipe(recipe, opts, progress=progress, wrap_llm=wrap, log=log, cache=store)
    finally:
        built = files.close()  # (a run that raised leaves unrecorded files: the next run writes them again)
    resubmitted = files.written & ledger.failed.keys() if opts.retry_failed else set()
    return summary, ledger.add(built, resubmitted)


def export_requests(recipe: Any, opts: RunOptions, cache: Any, to: Path) -> list[RequestFile]:
    """Write the request of every generation the cache is missing to ``to`` (more files only past the
    ``[run] batch_max_*`` limits: ``NAME-2.jsonl``, ...), uploading nothing and writing no output."""
    check_batch_recipe(recipe)
    store = _store(cache)
    opts = attrs.evolve(opts, batch=True)
    limit = recipe.run
    files = RequestFiles(to.parent, to.stem, limit.batch_max_requests, limit.batch_max_bytes, name=to.name)
    with output_lock(opts.journal):
        state = RunState(recipe, opts)
        runner = batch_runner(recipe, opts)
        llm = collecting(files, frozenset(), {}, True)(recipe.build(store, metadata=True))
        try:
            for batch in state.batches(state.todo()):
                runner.run(llm, batch)
        finally:
            llm.close()
            done = files.close()
    return done


def import_results(
    recipe: Any, opts: RunOptions, cache: Any, source: Path, *, progress: OnProgress | None = None, log: Log = print
) -> tuple[Results, Summary]:
    """Read a batch output file (OpenAI format) into the cache, then write every row it completes.

    Failed lines become row failures; rows still missing generations are not written
    (``summary.pending_rows``): export them again.
    """
    check_batch_recipe(recipe)
    store = _store(cache)
    with open(source, "rb") as handle:
        results = read_results(handle, store, Results(), str(source))
    wrap = collecting(None, frozenset(), results.failed, False)
    opts = attrs.evolve(opts, batch=True)
    return results, run_recipe(recipe, opts, progress=progress, wrap_llm=wrap, log=log, cache=store)
