"""One batch of a run: rows in, output lines and failure records out, as a :class:`BatchResult`.

A :class:`BatchRunner` is a small picklable record (how many generations, which
output key, whether the LLM is a two-stage chain), so the same code turns a batch
into lines in this process and on a Ray replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from fnlabel.combinators.chain import Chain
from fnlabel.redact import scrub
from fnlabel.run.journal import to_json_line
from fnlabel.types import LLMLike, RowFailure

__all__ = ["Batch", "BatchResult", "BatchRunner", "Usage", "usd", "GENERATOR_KEY"]

#: where a two-stage run keeps the generator's LLMOutputs (its "outputs" are the labeller's)
GENERATOR_KEY = "generator_outputs"


@attrs.frozen
class Batch:
    """Consecutive rows of a run (in retry mode, rows with failure records): their indices in the
    input, the rows, and where each came from (``"line 4"``)."""

    indices: list[int]
    rows: list[dict[str, Any]]
    where: list[str]


def usd(amount: float) -> str:
    """A cost as text: cents for a dollar or more, six decimals below a cent.

    Examples:
        >>> usd(12.3456), usd(0.0123), usd(0.0000314)
        ('$12.35', '$0.0123', '$0.000031')
    """
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}" if amount >= 0.01 else f"${amount:.6f}"


@attrs.frozen
class Usage:
    """Tokens and cost of some outputs: the sums over their ``metadata``.

    Attributes:
        input_tokens, output_tokens: as the backends reported them (a generation that reported none adds 0).
        truncated: generations cut at ``max_new_tokens`` (``finish_reason == "length"``).
        cost: USD at the recipe's ``[pricing]``; None when no stage has prices.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    truncated: int = 0
    cost: float | None = None

    def __add__(self, other: Usage) -> Usage:
        costs = [c for c in (self.cost, other.cost) if c is not None]
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.truncated + other.truncated,
            sum(costs) if costs else None,
        )

    @staticmethod
    def of(outputs: list[list[Any]], pricing: Any = None, keep: bool = True) -> Usage:
        """The usage of rows of outputs, priced by ``pricing`` (a :class:`~fnlabel.recipes.records.Pricing`
        or None); ``keep=False`` removes each output's ``metadata`` once counted."""
        inputs = outs = truncated = 0
        for row in outputs:
            for o in row:
                meta = o.get("metadata") if keep else o.pop("metadata", None)
                if meta:
                    inputs += meta["input_tokens"] or 0
                    outs += meta["output_tokens"] or 0
                    truncated += meta["finish_reason"] == "length"
        cost = None if pricing is None else pricing.cost(inputs, outs)
        return Usage(inputs, outs, truncated, cost)


@attrs.frozen
class BatchResult:
    """What one batch produced.

    Attributes:
        lines: one output line per row of the batch, in order.
        failures: ``{"row", "where", "generation", "stage", "error"}`` records.
        generations: how many generations were made (not counting failed ones).
        error: the text of the exception when the call raised as a whole (its rows are failures), else None.
        usage: the tokens and cost of the batch's generations.
        row_usage, row_generations: the same per row (empty when not known).
    """

    lines: list[str]
    failures: list[dict[str, Any]]
    generations: int
    error: str | None = None
    usage: Usage = Usage()
    row_usage: tuple[Usage, ...] = ()
    row_generations: tuple[int, ...] = ()

    @staticmethod
    def join(parts: Sequence[tuple[Sequence[int], BatchResult]], size: int) -> BatchResult:
        """One result from the results of parts of a batch of ``size`` rows: ``(positions, result)`` pairs
        whose positions cover ``0..size-1`` once; failure records in row order, as one call writes them."""
        lines: list[str] = [""] * size
        row_usage, row_gens = [Usage()] * size, [0] * size
        failures: list[dict[str, Any]] = []
        for positions, res in parts:
            for j, p in enumerate(positions):
                lines[p] = res.lines[j]
                row_usage[p] = res.row_usage[j] if res.row_usage else Usage()
                row_gens[p] = res.row_generations[j] if res.row_generations else 0
            failures.extend(res.failures)
        failures.sort(key=lambda f: f["row"])  # (stable: a row's records keep their order)
        error = next((res.error for _, res in parts if res.error), None)
        usage = sum((res.usage for _, res in parts), Usage())
        gens = sum(res.generations for _, res in parts)
        return BatchResult(lines, failures, gens, error, usage, tuple(row_usage), tuple(row_gens))

    def only(self, positions: Sequence[int], rows: Sequence[int]) -> BatchResult:
        """The result of some rows of the batch: their ``positions`` in it and their input indices ``rows``."""
        keep = set(rows)
        return BatchResult(
            [self.lines[p] for p in positions],
            [f for f in self.failures if f["row"] in keep],
            sum(self.row_generations[p] for p in positions),
            self.error,
            sum((self.row_usage[p] for p in positions), Usage()),
            tuple(self.row_usage[p] for p in positions),
            tuple(self.row_generations[p] for p in positions),
        )


def _empty(model_name: str, k: int) -> list[dict[str, Any]]:
    return [{"model_name": model_name, "prompt_used": None, "raw_output": None, "parsed_output": None}] * k


def _count(outputs: list[list[Any]]) -> int:
    return sum(o.get("raw_output") is not None for outs in outputs for o in outs)


@attrs.frozen
class BatchRunner:
    """How a batch's results become output lines: ``num_generations`` per row under ``output_key``.

    ``feed``: the keys a two-stage run feeds the labeller (empty for one stage);
    ``two_stage``: the LLM is a :class:`~fnlabel.combinators.chain.Chain`;
    ``metadata``: the outputs keep their ``metadata`` (the LLM always makes it: usage is counted from it);
    ``pricing``, ``label_pricing``: the prices of the generator's and the labeller's tokens (or None).
    """

    num_generations: int
    output_key: str
    feed: tuple[str, ...] = ()
    two_stage: bool = False
    metadata: bool = True
    pricing: Any = None
    label_pricing: Any = None

    def run(self, llm: LLMLike, batch: Batch) -> BatchResult:
        """Run the batch's rows through ``llm``; whatever fails is recorded, nothing raises for the batch's rows."""
        rows, inputs, where = batch.indices, batch.rows, batch.where
        k, key = self.num_generations, self.output_key
        error, usage, gens = None, [Usage()] * len(rows), [0] * len(rows)
        try:
            if isinstance(llm, Chain):
                objs, failures, gens, error, usage = self._two_stage(llm, inputs)
            else:
                res = llm.run(list(inputs), k)
                usage = [Usage.of([outs], self.pricing, self.metadata) for outs in res.outputs]
                objs = [{**row, key: outs} for row, outs in zip(inputs, res.outputs)]
                failures, gens = list(res.failures), [_count([outs]) for outs in res.outputs]
        except Exception as exc:  # a whole call failed: its rows are recorded, the run goes on
            error = scrub(f"{type(exc).__name__}: {exc}")
            objs = [self._failed_row(self.model_name(llm), row) for row in inputs]
            failures = [RowFailure(j, None, "backend", error) for j in range(len(rows))]
        records = [
            {
                "row": rows[f.row],
                "where": where[f.row],
                "generation": f.generation,
                "stage": f.stage,
                "error": scrub(f.error),
            }
            for f in failures
        ]
        lines = [to_json_line(o) for o in objs]
        return BatchResult(lines, records, sum(gens), error, sum(usage, Usage()), tuple(usage), tuple(gens))

    def _two_stage(
        self, chain: Chain, inputs: Sequence[dict[str, Any]]
    ) -> tuple[list[Any], list[RowFailure], list[int], str | None, list[Usage]]:
        res = chain.run_stages(list(inputs), self.num_generations)
        usage = [
            Usage.of([gen], self.pricing, self.metadata) + Usage.of([lab], self.label_pricing, self.metadata)
            for gen, lab in zip(res.generated, res.labelled)
        ]
        gens = [_count([gen]) + _count([lab]) for gen, lab in zip(res.generated, res.labelled)]
        objs = []
        for j, row in enumerate(inputs):
            fed = res.label_rows[j] or {**row, **{f: [] for f in self.feed}}
            objs.append({**fed, self.output_key: res.labelled[j], GENERATOR_KEY: res.generated[j]})
        error = None
        if res.label_error is not None:  # the generations are written; the labels are failures
            error = scrub(f"labeller: {type(res.label_error).__name__}: {res.label_error}")
        return objs, list(res.failures), gens, error, usage

    def model_name(self, llm: LLMLike) -> str:
        """The model name the empty outputs of a failed row carry (a chain's: its generator's)."""
        return llm.generator.model_name if self.two_stage and isinstance(llm, Chain) else llm.model_name

    def crashed(self, model_name: str, batch: Batch, error: str) -> BatchResult:
        """The result of rows that never got a result (their worker died running them): empty outputs, and
        one ``stage = "replica"`` failure record per row with ``error``."""
        lines = [to_json_line(self._failed_row(model_name, row)) for row in batch.rows]
        records = [
            {"row": i, "where": w, "generation": None, "stage": "replica", "error": scrub(error)}
            for i, w in zip(batch.indices, batch.where)
        ]
        n = len(batch.indices)
        return BatchResult(lines, records, 0, None, Usage(), (Usage(),) * n, (0,) * n)

    def _failed_row(self, name: str, row: dict[str, Any]) -> dict[str, Any]:
        """The output line of a row whose call raised: empty outputs (for a chain: not labelled)."""
        k, key = self.num_generations, self.output_key
        if self.two_stage:
            return {**row, **{f: [] for f in self.feed}, key: [], GENERATOR_KEY: _empty(name, k)}
        return {**row, key: _empty(name, k)}
