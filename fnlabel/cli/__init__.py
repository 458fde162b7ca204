"""The ``fnlabel`` command: ``run``, ``validate`` and ``list``.

This is the only place where an :class:`~fnlabel.errors.FnlabelError` becomes an
exit code. Exit codes:

* 0: success (failed rows, if any, are recorded and reported; see ``--max-failures``);
* 1: an unexpected error (a bug: the traceback is printed);
* 2: a bad recipe, input or command line (the message is on stderr, no traceback
  unless ``--debug``);
* 3: the run stopped because more rows failed than ``--max-failures`` allows, or it cost
  more than ``--max-cost`` (everything done so far is kept: rerun to go on);
* 4: the backend failed before any row was done (a model that cannot load, a server
  that is down, a bad key): nothing was written;
* 5: batch mode (``--batch``, ``fnlabel batch import``): batches are still running, or rows wait
  for generations not yet answered; rerun the same command to collect them (docs/batch.md);
* 6: the run finished, but some rows killed the process running them every time (poison rows of
  a Ray run, recorded in the failures file with ``stage = "replica"``); every other row is written;
* 130: interrupted (Ctrl-C); rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import logging
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from fnlabel.cli.batch import add_batch_parser, batch_command, run_batch_command
from fnlabel.errors import BackendError, ConfigError, FnlabelError, RecipeError
from fnlabel.redact import scrub

__all__ = ["main"]

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_STOPPED, EXIT_BACKEND, EXIT_PENDING, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_CRASHED = 6


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fnlabel", description="Generate and label data with LLMs from TOML recipes.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and fnlabel's log")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,batch,validate,list}")

    run = sub.add_parser("run", help="run a recipe over its input, writing JSONL (resumes an unfinished output)")
    run.add_argument("recipe", help="path to a recipe .toml file")
    run.add_argument(
        "--input", help="input file (.jsonl .json .csv .parquet) or hf:NAME[:SPLIT]; overrides [run] input"
    )
    run.add_argument("--output", help="output .jsonl (or .parquet); overrides [run] output")
    run.add_argument("--num-generations", type=int, help="generations per input row; overrides [run]")
    run.add_argument("--limit", type=int, help="use only the first N input rows")
    run.add_argument("--batch-size", type=int, help="rows per batch (each batch is written when it completes)")
    run.add_argument("--retry-failed", action="store_true", help="rerun only the rows in OUTPUT.failures.jsonl")
    run.add_argument("--max-failures", type=int, help="stop (exit 3) once more than N rows have failed")
    run.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="stop (exit 3) once this run has cost more than USD at the recipe's [pricing]",
    )
    run.add_argument("--no-cache", action="store_true", help="do not use the per-sample cache")
    run.add_argument(
        "--cache",
        metavar="PATH",
        help="cache file (default: cache.sqlite in $FNLABEL_CACHE_DIR, else $XDG_CACHE_HOME/fnlabel, else "
        "~/.cache/fnlabel; 'next-to-output': <output>.cache.sqlite)",
    )
    run.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on Ray: at ADDRESS (host:port, auto, ray://host:10001), else [run] address, else "
        "RAY_ADDRESS or a new local instance; see docs/ray.md",
    )
    run.add_argument(
        "--batch",
        action="store_true",
        default=None,
        help="through the provider's Batch API at its batch price: submit, exit 5, rerun to collect "
        "(docs/batch.md); also [run] batch = true",
    )
    run.add_argument("--wait", action="store_true", help="with --batch: poll until every batch is done")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    add_batch_parser(sub)

    val = sub.add_parser("validate", help="check a recipe (and its prompt formatting fn) without loading a model")
    val.add_argument("recipe")
    val.add_argument("--dump", action="store_true", help="print the recipe as fnlabel reads it (TOML)")
    val.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    sub.add_parser("list", help="list task kinds, backend kinds and prompt formats")
    return p


def _cache_store(args: argparse.Namespace, opts: Any, log: Any = None) -> Any:
    """The per-sample cache of this run: on by default, off with ``--no-cache``."""
    from fnlabel.combinators.cache import cache_for_run

    return cache_for_run(opts.output, enabled=not args.no_cache, path=args.cache, warn=log)


def _cmd_run(args: argparse.Namespace) -> int:
    import attrs

    from fnlabel.cli.display import RunDisplay, print_summary
    from fnlabel.recipes import load_recipe
    from fnlabel.run import resolve_options, run_recipe

    recipe = load_recipe(args.recipe)
    if args.ray is not None:  # the runner dispatches on [run] engine
        address = args.ray or recipe.run.address
        recipe = attrs.evolve(recipe, run=attrs.evolve(recipe.run, engine="ray", address=address))
    opts = resolve_options(
        recipe,
        args.recipe,
        input=args.input,
        output=args.output,
        num_generations=args.num_generations,
        limit=args.limit,
        batch_size=args.batch_size,
        max_failures=args.max_failures,
        retry_failed=args.retry_failed,
        max_cost=args.max_cost,
        batch=args.batch,
    )
    if opts.batch or args.wait:
        return run_batch_command(args, recipe, opts, _cache_store)
    display = RunDisplay(sys.stderr)
    try:
        cache = _cache_store(args, opts, display.log)
        summary = run_recipe(recipe, opts, progress=display, log=display.log, cache=cache)
    except ConfigError as exc:  # raised while composing the LLM (e.g. a param the backend cannot honour)
        if isinstance(exc, RecipeError):
            raise
        raise RecipeError(f"{args.recipe}: {exc}") from exc
    finally:
        display.finish()
    print_summary(summary, opts, sys.stderr, cached=not args.no_cache)
    if summary.stopped:
        print(f"fnlabel: {summary.stopped}", file=sys.stderr)
        return EXIT_STOPPED
    if summary.crashed_rows:
        print(
            f"fnlabel: {summary.crashed_rows} rows killed the replica running them every time (poison rows); "
            f'they are recorded in {summary.failures_path} (stage "replica"), every other row is written',
            file=sys.stderr,
        )
        return EXIT_CRASHED
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from fnlabel.recipes import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe)
    if args.dump:
        sys.stdout.write(dump_recipe(recipe))
        return EXIT_OK
    problems = _preflight(recipe, args)
    stages = [("", recipe)] + ([("label: ", recipe.label)] if recipe.label is not None else [])
    for prefix, stage in stages:
        task = stage.task.build()
        for spec, child in stage.specs():
            where = " (in a child process)" if child else ""
            checks = getattr(spec.backend, "preflight", None)  # (a plugin's config may have none)
            found = checks(spec.params) if checks is not None else []
            problems.extend(f"{prefix}backend {type(spec.backend).kind}: {p}" for p in found)
            status = "problem" if found else "ok"
            print(
                f"{args.recipe}: {status}: {prefix}task {task.name} (needs {', '.join(task.input_keys)}), "
                f"backend {type(spec.backend).kind}{where}"
            )
    for problem in problems:
        print(f"fnlabel: {args.recipe}: {problem}", file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK


def _preflight(recipe: Any, args: argparse.Namespace) -> list[str]:
    """What ``fnlabel run`` would refuse in the run's files, without loading a model (the input is read)."""
    from fnlabel.run import open_input, resolve_options
    from fnlabel.run.state import scan_input, written_keys

    try:
        opts = resolve_options(recipe, args.recipe)
    except FnlabelError as exc:  # no input set, an output that is the input, an unknown output format
        return [str(exc)]
    if opts.input.startswith("hf:"):  # (not downloaded here: only the extra is checked)
        found = importlib.util.find_spec("datasets") is not None
        return [] if found else [f"{opts.input}: Hugging Face datasets need the extra: pip install 'fnlabel[datasets]'"]
    try:
        scan_input(open_input(opts.input, opts.limit), written_keys(recipe, opts))
    except FnlabelError as exc:
        return [str(exc)]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 32 else text[:29] + "...'"


def _keys(cls: Any) -> str:
    import attrs

    from fnlabel.redact import is_secret_field

    def key(f: Any) -> str:
        if isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            return str(f.name)
        return f"{f.name} (required)" if f.default is attrs.NOTHING else f"{f.name}={_short(f.default)}"

    return ", ".join(key(f) for f in attrs.fields(cls) if not is_secret_field(f))


def _origin(registry: Any, kind: str) -> str:
    origin = registry.origin(kind)
    return "" if origin == "built-in" else f" ({origin})"


def _cmd_list(_args: argparse.Namespace) -> int:
    from fnlabel.backends import BACKENDS
    from fnlabel.formats import FORMATS
    from fnlabel.run.inputs import INPUT_FORMATS
    from fnlabel.tasks import TASKS

    print("tasks:")
    for kind in TASKS:
        try:
            factory = TASKS[kind]
        except FnlabelError as exc:  # a broken plugin must not break `list`
            print(f"  {kind:24} (cannot be loaded: {exc})")
            continue
        doc = (factory.__doc__ or "").strip().splitlines()
        print(f"  {kind:24} {doc[0] if doc else ''}{_origin(TASKS, kind)}")
        params = inspect.signature(factory).parameters.values()
        keys = ", ".join(p.name if p.default is p.empty else f"{p.name}={_short(p.default)}" for p in params)
        print(f"  {'':24} keys: {keys}")
    print("backends:")
    for kind in BACKENDS:
        try:
            keys = f"keys: {_keys(BACKENDS[kind])}"
        except FnlabelError as exc:  # an optional backend that is not installed, a broken plugin
            keys = f"(not available in this installation: {exc})"
        print(f"  {kind:24} {keys}{_origin(BACKENDS, kind)}")
    print("prompt formats:")
    print("  " + ", ".join(FORMATS))
    print("input formats:")
    print("  " + ", ".join(INPUT_FORMATS))
    found = sorted(Path("recipes").glob("*.toml"))
    if found:
        print("recipes (in ./recipes):")
        for path in found:
            print(f"  {path}")
    return EXIT_OK


class _Scrubbed:
    """A text stream that masks secrets (``fnlabel.redact.scrub``) in everything written to it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(scrub(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fnlabel`` console script and ``python -m fnlabel``.

    Everything it prints (results, errors, the log, ``--debug`` tracebacks) goes through
    :func:`fnlabel.redact.scrub`: no secret reaches the terminal.
    """
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Scrubbed(out), _Scrubbed(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s"
    )
    commands = {"run": _cmd_run, "batch": batch_command(_cache_store), "validate": _cmd_validate, "list": _cmd_list}
    try:
        return commands[args.command](args)
    except FnlabelError as exc:
        if debug:
            traceback.print_exc()
        print(f"fnlabel: error: {exc}", file=sys.stderr)
        return EXIT_BACKEND if isinstance(exc, BackendError) else EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "\nfnlabel: interrupted; the output holds every finished batch: rerun the same command to resume",
            file=sys.stderr,
        )
        if any(t.name.startswith("fnlabel-batch") and t.is_alive() for t in threading.enumerate()):
            # a second Ctrl-C left a batch inside a local model: exit now rather than wait for it
            # (the output is fsynced batch by batch; the exit must not free the model under it)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
