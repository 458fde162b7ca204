"""The records a recipe becomes: frozen, hashable, picklable, and each able to ``build()`` its part.

A recipe names a task, a backend and params (plus how to run them); see
docs/recipes.md for every key. The top level is the generator :class:`Stage`;
``[label]`` a :class:`LabelStage`; ``[[pool]]`` a tuple of :class:`PoolMember`;
``[run]`` a :class:`RunSpec`. Each stage becomes one :class:`~fnlabel.combinators.spec.LLMSpec`
per LLM, built here or in an ``in_process`` child.
"""

from __future__ import annotations

from typing import Any, Literal, NewType

import attrs

from fnlabel.combinators.chain import Chain
from fnlabel.combinators.pool import pooled
from fnlabel.combinators.process import in_process, in_processes
from fnlabel.combinators.spec import LLMSpec
from fnlabel.errors import ConfigError
from fnlabel.frozen import FrozenMap, thaw
from fnlabel.redact import register_config
from fnlabel.tasks import TASKS
from fnlabel.types import GenerationParams, Task
from fnlabel.validators import MAX_NUM_GENERATIONS, check_input_source, check_output_path, integer, number, text

__all__ = [
    "Recipe",
    "Pricing",
    "Stage",
    "LabelStage",
    "PoolMember",
    "RunSpec",
    "TaskSpec",
    "BackendConfig",
    "PromptFormat",
    "ObjectPath",
    "ParamsOverride",
    "KeyMap",
    "PositiveInt",
    "NonNegativeInt",
]

#: a recipe's backend table: structured into the config class of its ``kind``
BackendConfig = NewType("BackendConfig", object)
#: a prompt format name (checked against FORMATS)
PromptFormat = NewType("PromptFormat", str)
#: "package.module:function"
ObjectPath = NewType("ObjectPath", str)
#: overrides of a stage's [params] in a [[pool]] member
ParamsOverride = NewType("ParamsOverride", FrozenMap)
#: ``[label.inputs]``: labeller input key -> generator output key
KeyMap = NewType("KeyMap", FrozenMap)
PositiveInt = NewType("PositiveInt", int)
NonNegativeInt = NewType("NonNegativeInt", int)


@attrs.frozen(kw_only=True)
class Pricing:
    """``[pricing]``: USD per million tokens (nothing is fetched: the prices are the ones written here).

    Examples:
        >>> Pricing(input=0.15, output=0.60).cost(input_tokens=2_000_000, output_tokens=500_000)
        0.6
    """

    input: float = attrs.field(default=0.0, validator=number(0.0))
    output: float = attrs.field(default=0.0, validator=number(0.0))
    #: the prices of the Batch API (``fnlabel run --batch``); unset: half of ``input`` / ``output``
    batch_input: float | None = attrs.field(default=None, validator=number(0.0, optional=True))
    batch_output: float | None = attrs.field(default=None, validator=number(0.0, optional=True))

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The USD price of that many prompt and output tokens."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000

    def for_batch(self) -> Pricing:
        """The prices a batch-mode run pays: ``batch_input`` / ``batch_output``, else half the others.

        Examples:
            >>> Pricing(input=2.0, output=8.0).for_batch().cost(1_000_000, 1_000_000)
            5.0
        """
        half_in, half_out = self.input / 2, self.output / 2
        return Pricing(
            input=half_in if self.batch_input is None else self.batch_input,
            output=half_out if self.batch_output is None else self.batch_output,
        )


@attrs.frozen(kw_only=True)
class TaskSpec:
    """``[task]``: a task ``kind`` (see ``fnlabel.tasks.TASKS``) and its factory's keyword arguments."""

    kind: str
    options: FrozenMap = FrozenMap()

    def build(self) -> Task:
        return TASKS.load(self.kind)(**thaw(self.options))


@attrs.frozen(kw_only=True)
class PoolMember:
    """One ``[[pool]]`` member; unset keys are inherited from its stage (``params`` are merged)."""

    backend: BackendConfig | None = None
    params: ParamsOverride = ParamsOverride(FrozenMap())
    prompt_format: PromptFormat | None = None
    prompt_formatting_fn: ObjectPath | None = None
    in_process: bool | None = None
    model_name: str | None = None


@attrs.frozen(kw_only=True)
class Stage:
    """One LLM of a recipe: the top level (the generator) or ``[label]`` (the labeller)."""

    task: TaskSpec
    backend: BackendConfig | None = None
    params: GenerationParams = GenerationParams()
    prompt_format: PromptFormat | None = None
    prompt_formatting_fn: ObjectPath | None = None
    in_process: bool = False
    model_name: str | None = None
    pool: tuple[PoolMember, ...] = ()
    #: the prices of this stage's tokens (every [[pool]] member's too); None: the run's cost leaves it out
    pricing: Pricing | None = None

    def __attrs_post_init__(self) -> None:
        if not self.pool and self.backend is None:
            raise ConfigError("no backend: add a [backend] table with a kind (or a [[pool]] of members)")
        for i, member in enumerate(self.pool):
            if member.backend is None and self.backend is None:
                raise ConfigError(f"pool[{i}] has no backend: add [pool.backend] or a top-level [backend]")
        if self.pool and self.model_name is not None:
            raise ConfigError("model_name: with a [[pool]], set model_name in each member")

    def specs(self) -> list[tuple[LLMSpec, bool]]:
        """The concrete LLMs of this stage (one, or one per pool member) and whether each runs in_process."""
        if not self.pool:
            spec = LLMSpec(
                task=self.task,
                backend=self.backend,
                params=self.params,
                prompt_format=self.prompt_format,
                prompt_formatting_fn=self.prompt_formatting_fn,
                model_name=self.model_name,
            )
            return [(spec, self.in_process)]
        out = []
        for m in self.pool:
            spec = LLMSpec(
                task=self.task,
                backend=m.backend if m.backend is not None else self.backend,
                params=self.params.replace(**m.params) if m.params else self.params,
                prompt_format=m.prompt_format or self.prompt_format,
                prompt_formatting_fn=m.prompt_formatting_fn or self.prompt_formatting_fn,
                model_name=m.model_name,
            )
            out.append((spec, self.in_process if m.in_process is None else m.in_process))
        return out

    def register_secrets(self) -> None:
        """Let :func:`fnlabel.redact.scrub` mask the keys this stage's backends read from the environment."""
        for spec, _child in self.specs():
            register_config(spec.backend)

    def build(self, cache: Any = None, metadata: bool = False, processes: int = 1) -> Any:
        """Compose this stage's LLM (in_process children and pools are started here).

        ``cache`` (a store or a file path, see :func:`fnlabel.combinators.cache.cached`) caches
        every generation, in whichever process builds each LLM; ``metadata``: each output gets its
        ``metadata`` (see :func:`fnlabel.llm`); ``processes`` > 1: the backend's requests are spread
        over that many child processes (:func:`~fnlabel.combinators.process.in_processes`).
        """
        if processes > 1 and (self.pool or self.in_process):
            raise ConfigError("[run] processes: not with [[pool]] or in_process = true (set processes = 1)")
        llms: list[Any] = []
        self.register_secrets()  # this process masks the keys its in_process children read, too
        try:
            for spec, child in self.specs():
                spec = attrs.evolve(spec, cache=cache, metadata=metadata)
                if processes > 1:
                    llms.append(in_processes(spec, processes))
                else:
                    llms.append(in_process(spec) if child else spec.build())
            return pooled(llms) if self.pool else llms[0]
        except BaseException:  # a member that fails must not leave the others' children running
            for built in llms:
                built.close()
            raise


@attrs.frozen(kw_only=True)
class LabelStage(Stage):
    """``[label]``: a second LLM that labels the generator's outputs.

    ``inputs`` maps a labeller input key to a generator output key: the labeller's
    row is the input row plus ``key = [that output of each generation]``. By default
    every labeller input key that the generator outputs is fed this way.
    """

    inputs: KeyMap = KeyMap(FrozenMap())
    num_generations: PositiveInt = attrs.field(default=PositiveInt(1), validator=integer(1, high=MAX_NUM_GENERATIONS))


def _check_resources(value: Any) -> None:
    for name, amount in value.items():
        if name in ("CPU", "GPU", "memory", "object_store_memory"):
            raise ValueError(f"run.resources.{name}: set it with [run] num_cpus / num_gpus, not as a custom resource")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
            raise ValueError(
                f"run.resources.{name} must be a number >= 0 (how much of the Ray resource {name!r} a "
                f"replica needs), got {amount!r}"
            )


@attrs.frozen(kw_only=True)
class RunSpec:
    """``[run]``: what ``fnlabel run`` reads and writes (command-line options override these)."""

    input: str | None = attrs.field(default=None, validator=lambda _i, _a, v: v is None or check_input_source(v))
    output: str | None = attrs.field(default=None, validator=lambda _i, _a, v: v is None or check_output_path(v))
    num_generations: PositiveInt = attrs.field(default=PositiveInt(1), validator=integer(1, high=MAX_NUM_GENERATIONS))
    limit: PositiveInt | None = None
    batch_size: PositiveInt = PositiveInt(16)
    max_failures: NonNegativeInt | None = None
    #: stop once the run's cost (at the [pricing] prices) is above this many USD
    max_cost: float | None = attrs.field(default=None, validator=number(0.0, optional=True))
    output_key: str = attrs.field(default="outputs", validator=text())
    #: run through the provider's Batch API (``fnlabel run --batch``; see docs/batch.md and fnlabel.batches)
    batch: bool = False
    #: a batch request file holds at most this many requests and bytes (OpenAI's limits by default)
    batch_max_requests: PositiveInt = attrs.field(default=PositiveInt(50_000), validator=integer(1))
    batch_max_bytes: PositiveInt = PositiveInt(200_000_000)
    #: seconds between two polls of ``fnlabel run --batch --wait``
    batch_poll_interval: float = attrs.field(default=30.0, validator=number(0.0, low_open=True))
    #: each output's ``metadata`` (finish reason, tokens, logprobs) is written; false: the seed's four keys only
    metadata: bool = True
    #: "ray": run on a Ray cluster (see docs/ray.md and fnlabel.run.ray); the rest are Ray's settings
    #: child processes an HTTP backend's requests are spread over (each with its share of max_concurrency)
    processes: PositiveInt = attrs.field(default=PositiveInt(1), validator=integer(1, high=256))
    engine: Literal["local", "ray"] = "local"
    address: str | None = None
    replicas: PositiveInt = PositiveInt(1)
    num_cpus: float = attrs.field(default=1.0, validator=number(0.0))  # resources per Ray replica
    num_gpus: float = attrs.field(default=0.0, validator=number(0.0))
    #: custom Ray resources each replica needs (``{worker = 1}``: only nodes started with that resource)
    resources: FrozenMap = attrs.field(default=FrozenMap(), validator=lambda _i, _a, v: _check_resources(v))
    #: tries of a batch whose replica dies (a crash, a lost node) before its rows are split to find the poison
    max_batch_attempts: PositiveInt = attrs.field(default=PositiveInt(3), validator=integer(1, high=100))


@attrs.frozen(kw_only=True)
class Recipe(Stage):
    """A whole recipe: the generator stage (top-level keys), ``[run]`` and an optional ``[label]`` stage."""

    run: RunSpec = RunSpec()
    label: LabelStage | None = None

    def build(self, cache: Any = None, metadata: bool = False, processes: int | None = None) -> Any:
        """The composed LLM: the generator, or a :class:`~fnlabel.combinators.chain.Chain` when ``[label]`` is set.

        ``cache``: a per-sample cache store or file path for every LLM of the recipe;
        ``metadata``: every output gets its ``metadata`` (see :func:`fnlabel.llm`); ``processes``:
        child processes per stage for an HTTP backend (default: ``[run] processes``).
        """
        n = self.run.processes if processes is None else processes
        if n > 1 and self.run.engine != "local":
            raise ConfigError("[run] processes: Ray replicas are processes already; set processes = 1 with --ray")
        generator = super().build(cache, metadata, n)
        if self.label is None:
            return generator
        try:
            labeller = self.label.build(cache, metadata, n)
        except BaseException:
            generator.close()
            raise
        return Chain(generator, labeller, self.label_inputs(), self.label.num_generations)

    def register_secrets(self) -> None:
        """Let :func:`fnlabel.redact.scrub` mask the keys every backend of the recipe reads (both stages)."""
        super().register_secrets()
        if self.label is not None:
            self.label.register_secrets()

    def label_inputs(self) -> tuple[tuple[str, str], ...]:
        """``(labeller key, generator output key)`` pairs fed to the labeller."""
        if self.label is None:
            return ()
        if self.label.inputs:
            return tuple(self.label.inputs.items())
        gen_out = self.task.build().output_keys
        return tuple((k, k) for k in self.label.task.build().input_keys if k in gen_out)
