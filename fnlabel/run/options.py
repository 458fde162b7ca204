"""A run's settings: the recipe's ``[run]`` table with the command line's overrides applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import InputError, RecipeError
from fnlabel.validators import MAX_NUM_GENERATIONS, OUTPUT_SUFFIXES, check_int, check_number

__all__ = ["RunOptions", "resolve_options"]


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
    max_cost: float | None = None
    metadata: bool = True
    #: through the provider's Batch API (see fnlabel.batches): rows are written once their batches answered
    batch: bool = False
    #: the cost is counted at the [pricing] tables' batch prices (set by fnlabel.batches.run_batch)
    batch_prices: bool = False

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
        num_generations=check_int(
            given.get("num_generations", run.num_generations), "num_generations", low=1, high=MAX_NUM_GENERATIONS
        ),
        limit=check_int(given.get("limit", run.limit), "limit", low=1, optional=True),
        batch_size=check_int(given.get("batch_size", run.batch_size), "batch_size", low=1),
        max_failures=check_int(given.get("max_failures", run.max_failures), "max_failures", low=0, optional=True),
        retry_failed=bool(given.get("retry_failed", False)),
        output_key=run.output_key,
        max_cost=check_number(given.get("max_cost", run.max_cost), "max_cost", low=0.0, optional=True),
        metadata=run.metadata,
        batch=bool(given.get("batch", run.batch)),
    )
    if opts.max_cost is not None and recipe.pricing is None and getattr(recipe.label, "pricing", None) is None:
        raise RecipeError(
            f"--max-cost {opts.max_cost} needs prices: add a [pricing] table to the recipe "
            "(input = ..., output = ..., USD per million tokens)"
        )
    if opts.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{opts.output}: output must end in .jsonl (or .parquet)")
    if not opts.input.startswith("hf:") and Path(opts.input).resolve() in (
        opts.output.resolve(),
        opts.journal.resolve(),
        opts.failures_path.resolve(),
    ):  # its rows would read as rows already done
        raise InputError(f"{opts.output}: the output is the input file ({opts.input}): pass another --output")
    return opts
