"""Two stages in a row: a generator, then a labeller that reads the generator's outputs.

This is what distilabel 0.x's ``Pipeline(generator=..., labeller=...)`` did. For
each input row, the labeller's row is the input row plus, for each
``(label_key, output_key)`` pair of ``feed``, ``label_key = [parsed_output[output_key]
of each generation]`` (failed generations left out). A row whose generations all
failed is not labelled; it is reported as a failure of stage ``label``. Nor is a row with a
generation still pending in a Batch API batch (:data:`~fnlabel.errors.BATCH_PENDING`): it is
labelled once all its generations are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from fnlabel.errors import BATCH_PENDING
from fnlabel.llm import LLMBase, check_call
from fnlabel.types import Input, LLMLike, LLMOutput, RowFailure, RunResult, Task

__all__ = ["Chain", "ChainResult"]


@attrs.frozen
class ChainResult:
    """What both stages produced for a list of inputs.

    ``label_rows[i]`` is the labeller's input for row i (None when it was not labelled);
    ``failures`` carry the stage in their ``stage`` field as ``"generate.<stage>"`` or
    ``"label.<stage>"``. ``label_error`` is the exception of a labeller call that raised as a
    whole: the generations are kept, and every row it was to label has a ``label.backend`` failure.
    """

    generated: list[list[LLMOutput]]
    label_rows: list[dict[str, Any] | None]
    labelled: list[list[LLMOutput]]
    failures: tuple[RowFailure, ...]
    label_error: Exception | None = None


@attrs.frozen
class Chain(LLMBase):
    """A generator LLM feeding a labeller LLM (both any LLM-like values); itself an LLM-like.

    Its ``task`` is the generator's (what an input row needs); calling it returns the
    labeller's outputs. ``submit`` runs both stages on the shared thread pool.
    """

    generator: LLMLike
    labeller: LLMLike
    feed: tuple[tuple[str, str], ...]
    label_generations: int = 1

    @property
    def task(self) -> Task:
        return self.generator.task

    @property
    def model_name(self) -> str:
        return f"{self.generator.model_name} -> {self.labeller.model_name}"

    @property
    def max_concurrency(self) -> int:
        """The smaller of the two stages' (each call runs both)."""
        return min(self.generator.max_concurrency, self.labeller.max_concurrency)

    def map_inner(self, change: Any) -> Chain:
        """The same chain with ``change`` applied to both stages (how combinators reach inside)."""
        return Chain(
            self.generator.map_inner(change), self.labeller.map_inner(change), self.feed, self.label_generations
        )

    def run_stages(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> ChainResult:
        """Run the generator with ``num_generations`` (generations ``first_generation..``), then label each row's."""
        check_call(num_generations, first_generation)
        rows = list(inputs)
        gen = self.generator.run(rows, num_generations, first_generation=first_generation)
        failures = [attrs.evolve(f, stage=f"generate.{f.stage}") for f in gen.failures]
        pending = {f.row for f in gen.failures if f.error == BATCH_PENDING}
        label_rows: list[dict[str, Any] | None] = []
        for i, (row, outs) in enumerate(zip(rows, gen.outputs)):
            if i in pending:  # labelled once the batch has answered all its generations
                label_rows.append(None)
                continue
            fed = {}
            for label_key, out_key in self.feed:
                fed[label_key] = [
                    o["parsed_output"][out_key]
                    for o in outs
                    if o["parsed_output"] is not None and out_key in o["parsed_output"]
                ]
            if self.feed and not any(fed.values()):
                label_rows.append(None)
                failures.append(RowFailure(i, None, "label.input", "no generation to label (the generator failed)"))
            else:
                label_rows.append({**row, **fed})
        todo = [(i, r) for i, r in enumerate(label_rows) if r is not None]
        labelled: list[list[LLMOutput]] = [[] for _ in rows]
        try:
            res = self.labeller.run([r for _, r in todo], self.label_generations) if todo else RunResult([])
        except Exception as exc:  # the generations are paid for: keep them, fail only the labels
            error = f"{type(exc).__name__}: {exc}"
            failures.extend(RowFailure(i, None, "label.backend", error) for i, _ in todo)
            return ChainResult(gen.outputs, label_rows, labelled, tuple(failures), exc)
        for j, (i, _) in enumerate(todo):
            labelled[i] = res.outputs[j]
        failures.extend(attrs.evolve(f, row=todo[f.row][0], stage=f"label.{f.stage}") for f in res.failures)
        return ChainResult(gen.outputs, label_rows, labelled, tuple(failures))

    def run(self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0) -> RunResult:
        """The labeller's outputs for each input, and the failures of both stages.

        A labeller that raises as a whole raises here too, as a single LLM would
        (:meth:`run_stages` keeps the generations instead).
        """
        res = self.run_stages(inputs, num_generations, first_generation=first_generation)
        if res.label_error is not None:
            raise res.label_error
        return RunResult(res.labelled, res.failures)

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> list[list[LLMOutput]]:
        return self.run(inputs, num_generations).outputs

    def close(self) -> None:
        """Close both stages (the labeller even when closing the generator raises)."""
        try:
            self.generator.close()
        finally:
            self.labeller.close()
