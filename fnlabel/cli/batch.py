"""``fnlabel run --batch``, ``fnlabel batch export`` and ``fnlabel batch import`` (see docs/batch.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fnlabel.errors import ConfigError, RecipeError

__all__ = ["add_batch_parser", "batch_command", "run_batch_command"]

EXIT_OK, EXIT_STOPPED, EXIT_PENDING = 0, 3, 5


def add_batch_parser(sub: Any) -> None:
    batch = sub.add_parser("batch", help="Batch API request files for offline engines: export, import")
    verbs = batch.add_subparsers(dest="verb", required=True, metavar="{export,import}")
    export = verbs.add_parser("export", help="write the request of every generation not in the cache (no upload)")
    export.add_argument("recipe")
    export.add_argument("--to", required=True, metavar="PATH", help="the OpenAI-format request file (.jsonl)")
    imp = verbs.add_parser("import", help="read an OpenAI-format batch output file into the cache and the output")
    imp.add_argument("recipe")
    imp.add_argument("results", help="the batch output file (.jsonl)")
    for p in (export, imp):
        p.add_argument("--input", help="overrides [run] input")
        p.add_argument("--output", help="overrides [run] output")
        p.add_argument("--num-generations", type=int, help="overrides [run] num_generations")
        p.add_argument("--limit", type=int, help="use only the first N input rows")
        p.add_argument("--cache", metavar="PATH", help="cache file (as fnlabel run --cache)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        p.set_defaults(no_cache=False)


def _composing(recipe_path: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ConfigError as exc:  # raised while composing the LLM
        if isinstance(exc, RecipeError):
            raise
        raise RecipeError(f"{recipe_path}: {exc}") from exc


def run_batch_command(args: argparse.Namespace, recipe: Any, opts: Any, cache_store: Callable[..., Any]) -> int:
    """``fnlabel run --batch [--wait]``: exit 0 when the output is complete, 5 while batches run."""
    from fnlabel.batches import run_batch
    from fnlabel.cli.display import RunDisplay, print_summary

    if not opts.batch:
        raise RecipeError("--wait polls the batches of a batch-mode run: add --batch")
    display = RunDisplay(sys.stderr)
    try:
        cache = cache_store(args, opts, display.log)
        done = _composing(
            args.recipe, lambda: run_batch(recipe, opts, cache, wait=args.wait, progress=display, log=display.log)
        )
    finally:
        display.finish()
    print_summary(done.summary, opts, sys.stderr, cached=True)
    if done.submitted:
        print(
            f"fnlabel: submitted {done.requests} requests in {len(done.submitted)} batches (recorded in {done.ledger})",
            file=sys.stderr,
        )
    if done.summary.stopped:
        print(f"fnlabel: {done.summary.stopped}", file=sys.stderr)
        return EXIT_STOPPED
    if done.running or done.summary.pending_rows:
        for line in done.running:
            print(f"  batch {line}", file=sys.stderr)
        print(
            f"fnlabel: {done.summary.pending_rows} rows wait for batch results; rerun the same command to collect "
            "them (exit 5: batches pending)",
            file=sys.stderr,
        )
        return EXIT_PENDING
    return EXIT_OK


def batch_command(cache_store: Callable[..., Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from fnlabel.batches import export_requests, import_results
        from fnlabel.cli.display import RunDisplay, print_summary
        from fnlabel.recipes import load_recipe
        from fnlabel.run import resolve_options

        recipe = load_recipe(args.recipe)
        opts = resolve_options(
            recipe,
            args.recipe,
            input=args.input,
            output=args.output,
            num_generations=args.num_generations,
            limit=args.limit,
            batch=True,
        )
        cache = cache_store(args, opts)
        if args.verb == "export":
            to = Path(args.to)
            files = _composing(args.recipe, lambda: export_requests(recipe, opts, cache, to))
            total = sum(f.requests for f in files)
            names = ", ".join(f.path for f in files) or f"nothing ({to} not written)"
            print(f"fnlabel: {total} requests written: {names}", file=sys.stderr)
            return EXIT_OK
        display = RunDisplay(sys.stderr)
        try:
            results, summary = _composing(
                args.recipe,
                lambda: import_results(recipe, opts, cache, Path(args.results), progress=display, log=display.log),
            )
        finally:
            display.finish()
        print(
            f"fnlabel: {args.results}: {results.stored} generations imported, {len(results.failed)} failed lines"
            + (f", {results.foreign} lines fnlabel did not write (ignored)" if results.foreign else ""),
            file=sys.stderr,
        )
        print_summary(summary, opts, sys.stderr, cached=True)
        if summary.pending_rows:
            print(
                f"fnlabel: {summary.pending_rows} rows wait for generations the file does not hold: "
                "export again, run the requests, and import their results (exit 5)",
                file=sys.stderr,
            )
            return EXIT_PENDING
        return EXIT_OK

    return run
