"""Recipes: TOML files become frozen records through one cattrs converter.

A recipe names a task, a backend and params (plus how to run them); see
docs/recipes.md for every key. :func:`load_recipe` reads and validates a file,
:func:`build` composes the LLM it describes, :func:`dump_recipe` writes it back
as TOML (``load(dump(r)) == r``; secrets are never written).

Examples:
    >>> recipe = loads_recipe('''
    ... [task]
    ... kind = "text-generation"
    ... system_prompt = ""
    ... [backend]
    ... kind = "echo"
    ... [params]
    ... max_new_tokens = 2
    ... ''')
    >>> gen = recipe.build()
    >>> gen([{"input": "one two three"}])[0][0]["raw_output"]  # doctest: +ELLIPSIS
    '[0:...] one two'
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NewType

import attrs
from cattrs.errors import ClassValidationError, IterableValidationError

from fnlabel import recipe_types as rt
from fnlabel.errors import ConfigError, RecipeError
from fnlabel.formats import check_format
from fnlabel.recipe_types import FrozenMap, Mismatch, converter, frozen

__all__ = [
    "Recipe",
    "Stage",
    "LabelStage",
    "PoolMember",
    "RunSpec",
    "TaskSpec",
    "LLMSpec",
    "load_recipe",
    "loads_recipe",
    "build",
    "dump_recipe",
    "import_object",
]

#: a recipe's backend table: structured into the config class of its ``kind``
BackendConfig = NewType("BackendConfig", object)
#: a prompt format name (checked against FORMATS)
PromptFormat = NewType("PromptFormat", str)
#: "package.module:function"
ObjectPath = NewType("ObjectPath", str)
#: overrides of a stage's [params] in a [[pool]] member
ParamsOverride = NewType("ParamsOverride", FrozenMap)


def import_object(path: str) -> Any:
    """Import ``"package.module:name"`` (for ``prompt_formatting_fn``).

    Examples:
        >>> import_object("fnlabel.formats:as_chatml").__name__
        'as_chatml'
    """
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"expected 'package.module:function', got {path!r}")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module!r} ({exc}); is it installed or on PYTHONPATH?") from exc
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module!r} has no attribute {name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{path!r} is not callable")
    return obj


@attrs.frozen(kw_only=True)
class TaskSpec:
    """``[task]``: a task ``kind`` (see ``fnlabel.tasks.TASKS``) and its factory's keyword arguments."""

    kind: str
    options: FrozenMap = FrozenMap()

    def build(self) -> Any:
        from fnlabel.tasks import TASKS

        return TASKS[self.kind](**rt.thaw(self.options))


@attrs.frozen(kw_only=True)
class LLMSpec:
    """Everything one concrete LLM needs; picklable, so an ``in_process`` child can ``build()`` it."""

    task: TaskSpec
    backend: Any
    params: Any
    prompt_format: str | None = None
    prompt_formatting_fn: str | None = None
    model_name: str | None = None
    #: a per-sample cache store (or its file path): applied where the LLM is built, so an
    #: in_process child caches in its own process
    cache: Any = attrs.field(default=None, eq=False)

    def build(self) -> Any:
        """The plain LLM, built in this process (this loads the model)."""
        from fnlabel.llm import llm

        fn = import_object(self.prompt_formatting_fn) if self.prompt_formatting_fn else None
        built = llm(
            self.task.build(),
            self.backend.build(),
            self.params,
            model_name=self.model_name,
            prompt_format=self.prompt_format,
            prompt_formatting_fn=fn,
        )
        if self.cache is None:
            return built
        from fnlabel.cache import cached

        return cached(built, self.cache)


@attrs.frozen(kw_only=True)
class PoolMember:
    """One ``[[pool]]`` member; unset keys are inherited from its stage (``params`` are merged)."""

    backend: BackendConfig | None = None
    params: ParamsOverride = FrozenMap()
    prompt_format: PromptFormat | None = None
    prompt_formatting_fn: ObjectPath | None = None
    in_process: bool | None = None
    model_name: str | None = None


@attrs.frozen(kw_only=True)
class Stage:
    """One LLM of a recipe: the top level (the generator) or ``[label]`` (the labeller)."""

    task: TaskSpec
    backend: BackendConfig | None = None
    params: rt.Params = rt.Params()
    prompt_format: PromptFormat | None = None
    prompt_formatting_fn: ObjectPath | None = None
    in_process: bool = False
    model_name: str | None = None
    pool: tuple[PoolMember, ...] = ()

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

    def build(self, cache: Any = None) -> Any:
        """Compose this stage's LLM (in_process children and pools are started here).

        ``cache`` (a store or a file path, see :func:`fnlabel.cache.cached`) caches
        every generation, in whichever process builds each LLM.
        """
        llms: list[Any] = []
        try:
            for spec, child in self.specs():
                if cache is not None:
                    spec = attrs.evolve(spec, cache=cache)
                if child:
                    from fnlabel.process import in_process

                    llms.append(in_process(spec))
                else:
                    llms.append(spec.build())
            if not self.pool:
                return llms[0]
            from fnlabel.pool import pooled

            return pooled(llms)
        except BaseException:  # a member that fails must not leave the others' children running
            for built in llms:
                _close(built)
            raise


@attrs.frozen(kw_only=True)
class LabelStage(Stage):
    """``[label]``: a second LLM that labels the generator's outputs.

    ``inputs`` maps a labeller input key to a generator output key: the labeller's
    row is the input row plus ``key = [that output of each generation]``. By default
    every labeller input key that the generator outputs is fed this way.
    """

    inputs: FrozenMap = FrozenMap()
    num_generations: rt.PositiveInt = 1


@attrs.frozen(kw_only=True)
class RunSpec:
    """``[run]``: what ``fnlabel run`` reads and writes (command-line options override these)."""

    input: str | None = attrs.field(default=None, validator=lambda _i, a, v: _run_path(a.name, v))
    output: str | None = attrs.field(default=None, validator=lambda _i, a, v: _run_path(a.name, v))
    num_generations: rt.PositiveInt = 1
    limit: rt.PositiveInt | None = None
    batch_size: rt.PositiveInt = 16
    max_failures: rt.NonNegativeInt | None = None
    output_key: str = "outputs"
    #: "ray": run on a Ray cluster (see docs/ray.md and fnlabel.ray_engine); the rest are Ray's settings
    engine: Literal["local", "ray"] = "local"
    address: str | None = None
    replicas: rt.PositiveInt = 1
    num_cpus: float = attrs.field(default=1.0, validator=lambda _i, a, v: _non_negative(a.name, v))
    num_gpus: float = attrs.field(default=0.0, validator=lambda _i, a, v: _non_negative(a.name, v))


def _run_path(name: str, value: str | None) -> None:
    """``fnlabel validate`` catches a path ``fnlabel run`` could not read or write."""
    if value is None:
        return
    from fnlabel.io import INPUT_FORMATS

    suffix = Path(value).suffix.lower()
    if name == "output" and suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f"output {value!r} must end in .jsonl (or .parquet)")
    if name == "input" and not value.startswith("hf:") and suffix not in INPUT_FORMATS:
        raise ConfigError(f"input {value!r} has an unknown format {suffix or '(no extension)'!r}; "
                          f"supported: {', '.join(INPUT_FORMATS)}")


def _non_negative(name: str, value: float) -> None:
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a number >= 0 (resources per Ray replica), got {value!r}")


@attrs.frozen(kw_only=True)
class Recipe(Stage):
    """A whole recipe: the generator stage (top-level keys), ``[run]`` and an optional ``[label]`` stage."""

    run: RunSpec = RunSpec()
    label: LabelStage | None = None

    def build(self, cache: Any = None) -> Any:
        """The composed LLM: the generator, or a :class:`~fnlabel.chain.Chain` when ``[label]`` is set.

        ``cache``: a per-sample cache store or file path for every LLM of the recipe.
        """
        generator = super().build(cache)
        if self.label is None:
            return generator
        from fnlabel.chain import Chain

        try:
            labeller = self.label.build(cache)
        except BaseException:
            _close(generator)
            raise
        return Chain(generator, labeller, self.label_inputs(), self.label.num_generations)

    def label_inputs(self) -> tuple[tuple[str, str], ...]:
        """``(labeller key, generator output key)`` pairs fed to the labeller."""
        if self.label is None:
            return ()
        if self.label.inputs:
            return tuple(self.label.inputs.items())
        gen_out = self.task.build().output_keys
        return tuple((k, k) for k in self.label.task.build().input_keys if k in gen_out)


def _close(llm: Any) -> None:
    close = getattr(llm, "close", None)
    if close is not None:
        close()


# --- structuring hooks --------------------------------------------------------------------------


def _kind(value: Any, what: str, known: Mapping[str, Any], missing_type: Any) -> str:
    """The ``kind`` of a ``[task]`` / ``[backend]`` table, checked against the ``known`` kinds."""
    if not isinstance(value, Mapping):
        raise Mismatch("a table", value)
    if "kind" not in value:
        raise rt.at("kind", ConfigError(f"missing; known {what} kinds: {', '.join(known)}"), missing_type)
    kind = value["kind"]
    if kind not in known:
        raise rt.at("kind", ConfigError(f"unknown {what} kind {kind!r}; known kinds: {', '.join(known)}"), str)
    return kind


def _backend_hook(value: Any, _t: Any) -> Any:
    from fnlabel.backends import BACKENDS, config_class

    kind = _kind(value, "backend", BACKENDS, BackendConfig)
    try:
        cls = config_class(kind)
    except ImportError as exc:
        msg = f"backend kind {kind!r} is not available in this installation ({exc})"
        raise rt.at("kind", ConfigError(msg), str) from exc
    return converter.structure({k: v for k, v in value.items() if k != "kind"}, cls)


def _task_hook(value: Any, _t: Any) -> TaskSpec:
    from fnlabel.tasks import TASKS

    kind = _kind(value, "task", TASKS, str)
    options = {k: v for k, v in value.items() if k != "kind"}
    rt.check_kwargs(TASKS[kind], options, f"task kind {kind!r}")
    spec = TaskSpec(kind=kind, options=frozen(options))
    spec.build()  # factories are pure and cheap: their own checks (e.g. unknown principle) run now
    return spec


def _format_hook(value: Any, _t: Any) -> str:
    if not isinstance(value, str):
        raise Mismatch("str", value)
    return check_format(value)


def _object_path_hook(value: Any, _t: Any) -> str:
    if not isinstance(value, str):
        raise Mismatch("str", value)
    import_object(value)
    return value


def _params_override_hook(value: Any, _t: Any) -> FrozenMap:
    if not isinstance(value, Mapping):
        raise Mismatch("a table", value)
    converter.structure(dict(value), rt.Params)  # validates keys and values
    return frozen(dict(value))


def _mapping_hook(value: Any, _t: Any) -> FrozenMap:
    if not isinstance(value, Mapping):
        raise Mismatch("a table", value)
    for k, v in value.items():
        if not isinstance(v, str):
            raise rt.at(k, Mismatch("str", v), str)
    return frozen(dict(value))


converter.register_structure_hook(BackendConfig, _backend_hook)
converter.register_structure_hook(TaskSpec, _task_hook)
converter.register_structure_hook(PromptFormat, _format_hook)
converter.register_structure_hook(ObjectPath, _object_path_hook)
converter.register_structure_hook(ParamsOverride, _params_override_hook)
converter.register_structure_hook(FrozenMap, _mapping_hook)


# --- public API ---------------------------------------------------------------------------------


def loads_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe TOML ``text``; errors name ``source`` and the key path."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: invalid TOML: {exc}") from exc
    try:
        return converter.structure(data, Recipe)
    except (ClassValidationError, IterableValidationError) as exc:
        lines = rt.error_lines(exc)
        raise RecipeError("\n".join(f"{source}: {line}" for line in lines)) from exc
    except ConfigError as exc:
        raise RecipeError(f"{source}: {exc}") from exc


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe file at ``path``.

    Examples:
        >>> load_recipe("recipes/echo.toml").backend.kind
        'echo'
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: a BOM some editors write is not TOML
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: no such recipe file (check the path; `fnlabel list` shows the recipes in ./recipes)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
    return loads_recipe(text, str(path))


def build(recipe: Recipe, cache: Any = None) -> Any:
    """Compose the LLM a recipe describes (``recipe.build(cache)``).

    Examples:
        >>> gen = build(load_recipe("recipes/echo.toml"))
        >>> len(gen([{"input": "hi"}], num_generations=2)[0])
        2
    """
    return recipe.build(cache)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as TOML; ``load(dump(r)) == r``; secret fields are never written."""
    from fnlabel.recipe_toml import dump

    return dump(recipe)
