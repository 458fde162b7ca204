"""Engines: what computes a run's batches, chosen by name from a registry.

The runner (:mod:`fnlabel.run.runner`) reads the input, writes the output and
records failures; an engine only turns batches of row indices into
:class:`~fnlabel.run.batch.BatchResult` s, yielded in input order. ``[run] engine``
names it: ``local`` (:class:`fnlabel.run.local.LocalEngine`, threads in this process)
or ``ray`` (:class:`fnlabel.run.ray.RayEngine`, Ray actors). The runner looks an
engine up here by name, so it never imports the Ray engine; plugins may add engines
through entry points in group ``fnlabel.engines`` (name: the engine, value: its class).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol

import attrs

from fnlabel.errors import ConfigError
from fnlabel.registry import Registry
from fnlabel.run.batch import Batch, BatchResult, BatchRunner
from fnlabel.types import LLMLike

__all__ = ["Engine", "Plan", "ENGINES", "make_engine"]

#: a log line for the user (the CLI prints it above the progress bar)
Log = Callable[[str], None]


@attrs.frozen
class Plan:
    """What an engine runs: the recipe's LLM (built where the engine computes) and how batches become lines.

    Picklable, so a Ray actor can build its own LLM from it.
    """

    recipe: Any
    runner: BatchRunner
    cache: Any = None
    wrap: Callable[[Any], Any] | None = None

    def build_llm(self) -> LLMLike:
        """The recipe's LLM (its outputs carry their ``metadata``: the run counts tokens and cost from it),
        cached when the run has a cache, wrapped when the caller asked."""
        llm = self.recipe.build(self.cache, metadata=True)
        return self.wrap(llm) if self.wrap is not None else llm


class Engine(Protocol):
    """Turns batches of row indices into results, in order."""

    def results(self, batches: Iterator[Batch]) -> Generator[tuple[Batch, BatchResult], None, None]:
        """Each batch with its result, in the order given (a batch is computed once); ``batches`` is
        read only as far as the engine computes ahead, so the rows are never all in memory."""
        ...

    def settle(self, log: Log | None = None, *, interrupted: bool = False) -> None:
        """Before :meth:`close`, after a stopped run (``interrupted``: by Ctrl-C): wait for work
        that must not be cut off."""
        ...

    def close(self) -> None:
        """Release the LLM, the actors, the threads."""
        ...


def _check_engine(name: str, cls: Any) -> None:
    if not callable(cls):
        raise ConfigError(f"engine {name!r} names {cls!r}, which is not an engine class taking a Plan")


#: ``[run] engine`` -> the engine class (imported on first use)
ENGINES: Registry = Registry(
    "engine",
    "fnlabel.engines",
    {"local": "fnlabel.run.local:LocalEngine", "ray": "fnlabel.run.ray:RayEngine"},
    check=_check_engine,
)


def make_engine(name: str, plan: Plan) -> Engine:
    """The engine ``name`` for ``plan`` (ConfigError listing the engines when unknown)."""
    return ENGINES.load(name)(plan)
