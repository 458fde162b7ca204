"""The one cattrs converter of fnlabel recipes, made by :func:`make_converter`.

:func:`configure_converter` (the cattrs ``configure_converter`` habit) sets up a
converter for recipes: TOML has real types, so scalars are strict (``"10"`` is not an
int, ``1.5`` is not an int, ``1`` is a fine float); containers report the key path
of every error; a typo in a table is an error, not a silently ignored key; and the
recipe's own types (a ``[backend]`` table structured into the config class of its
``kind``, a ``[task]`` checked against its factory, prompt formats, ``[params]``)
get their hooks.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.tomllib import make_converter as make_toml_converter

from fnlabel.backends import BACKENDS, config_class
from fnlabel.combinators.spec import import_object
from fnlabel.errors import ConfigError
from fnlabel.formats import check_format
from fnlabel.frozen import FrozenMap, frozen, frozen_table
from fnlabel.recipes.messages import Mismatch, at, check_kwargs, describe
from fnlabel.recipes.records import (
    BackendConfig,
    KeyMap,
    NonNegativeInt,
    ObjectPath,
    ParamsOverride,
    PositiveInt,
    PromptFormat,
    TaskSpec,
)
from fnlabel.registry import Registry
from fnlabel.tasks import TASKS
from fnlabel.types import GenerationParams

__all__ = ["converter", "make_converter", "configure_converter"]

Hook = Callable[[Any, Any], Any]


def make_converter() -> cattrs.Converter:
    """A new converter for recipes (see :func:`configure_converter`)."""
    converter = make_toml_converter(forbid_extra_keys=True)
    configure_converter(converter)
    return converter


def configure_converter(converter: cattrs.Converter) -> None:
    """Set ``converter`` up for recipes: strict scalars, containers, and the recipe's own types."""
    _configure_scalars(converter)
    _configure_containers(converter)
    _configure_recipe_types(converter)


# --- strict scalars -----------------------------------------------------------------------------


def _strict(check: Callable[[Any], bool], expected: str, convert: Callable[[Any], Any] = lambda v: v) -> Hook:
    def hook(value: Any, _t: Any) -> Any:
        if not check(value):
            raise Mismatch(expected, value)
        return convert(value)

    return hook


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _configure_scalars(converter: cattrs.Converter) -> None:
    converter.register_structure_hook(int, _strict(_is_int, "int"))
    number = _strict(lambda v: _is_int(v) or isinstance(v, float), "float", float)
    converter.register_structure_hook(float, number)
    converter.register_structure_hook(str, _strict(lambda v: isinstance(v, str), "str"))
    converter.register_structure_hook(bool, _strict(lambda v: isinstance(v, bool), "bool (true or false)"))
    converter.register_structure_hook(PositiveInt, _strict(lambda v: _is_int(v) and v >= 1, "int >= 1"))
    converter.register_structure_hook(NonNegativeInt, _strict(lambda v: _is_int(v) and v >= 0, "int >= 0"))


# --- containers ---------------------------------------------------------------------------------


def _is_union(t: Any) -> bool:
    return get_origin(t) in (Union, types.UnionType)


def _is_literal(t: Any) -> bool:
    return get_origin(t) is typing.Literal


def _is_mapping(t: Any) -> bool:
    return get_origin(t) in (dict, Mapping, typing.Mapping) or t in (dict, Mapping)


def _is_sequence(t: Any) -> bool:
    origin, args = get_origin(t), get_args(t)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, Sequence, typing.Sequence)


def _configure_containers(converter: cattrs.Converter) -> None:
    def union(t: Any) -> Hook:
        options = [a for a in get_args(t) if a is not type(None)]
        nullable = len(options) < len(get_args(t))

        def hook(value: Any, _t: Any) -> Any:
            if value is None and nullable:
                return None
            if len(options) == 1:  # Optional[X]: X's own error is the clearest
                return converter.structure(value, options[0])
            for option in options:  # the first type that takes the value wins (strict scalars: no coercion)
                try:
                    return converter.structure(value, option)
                except Exception:
                    continue
            raise Mismatch(describe(t), value)

        return hook

    def literal(t: Any) -> Hook:
        allowed = get_args(t)
        expected = "one of " + ", ".join(repr(a) for a in allowed)
        return _strict(lambda v: any(v == a and type(v) is type(a) for a in allowed), expected)

    def mapping(t: Any) -> Hook:
        key_t, value_t = (get_args(t) or (Any, Any))[:2]

        def hook(value: Any, _t: Any) -> Any:
            if not isinstance(value, Mapping):
                raise Mismatch("a table", value)
            out, errors = {}, []
            for k, v in value.items():
                try:
                    key = converter.structure(k, key_t) if key_t is not Any else k
                    out[key] = v if value_t is Any else converter.structure(v, value_t)
                except Exception as exc:
                    errors.append(at(str(k), exc, value_t).exceptions[0])
            if errors:
                raise ClassValidationError(f"while structuring {describe(t)}", errors, dict)
            return out

        return hook

    converter.register_structure_hook_factory(attrs.has, lambda t: _table(converter, t))
    converter.register_structure_hook_factory(_is_union, union)
    converter.register_structure_hook_factory(_is_literal, literal)
    converter.register_structure_hook_factory(_is_mapping, mapping)
    converter.register_structure_hook_factory(_is_sequence, lambda t: _sequence(converter, t))


def _sequence(converter: cattrs.Converter, t: Any) -> Hook:
    item = get_args(t)[0]
    build = list if get_origin(t) is list else tuple

    def hook(value: Any, _t: Any) -> Any:
        if item is str and isinstance(value, str):
            return build([value])  # `stop = "###"` means one stop string
        if not isinstance(value, (list, tuple)):
            raise Mismatch(f"a list of {describe(item)}", value)
        out, errors = [], []
        for i, v in enumerate(value):
            try:
                out.append(converter.structure(v, item))
            except Exception as exc:
                errors.append(at(i, exc, item).exceptions[0])
        if errors:
            raise IterableValidationError(f"while structuring {describe(t)}", errors, t)
        return build(out)

    return hook


def _table(converter: cattrs.Converter, t: Any) -> Hook:
    """Records (``[run]``, ``[label]``, a ``[[pool]]`` member) come from tables: say so for anything else."""
    inner = make_dict_structure_fn(t, converter)

    def hook(value: Any, _t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise Mismatch("a table", value)
        return inner(value, _t)

    return hook


# --- the recipe's own types ---------------------------------------------------------------------


def _kind(value: Any, registry: Registry[Any], missing_type: Any) -> str:
    """The ``kind`` of a ``[task]`` / ``[backend]`` table, checked against the registry's kinds."""
    if not isinstance(value, Mapping):
        raise Mismatch("a table", value)
    if "kind" not in value:
        known = ", ".join(registry)
        raise at("kind", ConfigError(f"missing; known {registry.what} kinds: {known}"), missing_type)
    kind = value["kind"]
    if kind not in registry:
        raise at("kind", ConfigError(f"unknown {registry.what} kind {kind!r}; known kinds: {', '.join(registry)}"), str)
    return kind


def _str_table(value: Any, _t: Any) -> FrozenMap:
    if not isinstance(value, Mapping):
        raise Mismatch("a table", value)
    for k, v in value.items():
        if not isinstance(v, str):
            raise at(k, Mismatch("str", v), str)
    return frozen(dict(value))


def _configure_recipe_types(converter: cattrs.Converter) -> None:
    def backend(value: Any, _t: Any) -> Any:
        kind = _kind(value, BACKENDS, BackendConfig)
        try:
            cls = config_class(kind)
        except ConfigError as exc:  # an optional backend whose module cannot be imported here
            raise at("kind", exc, str) from exc
        return converter.structure({k: v for k, v in value.items() if k != "kind"}, cls)

    def task(value: Any, _t: Any) -> TaskSpec:
        kind = _kind(value, TASKS, str)
        options = {k: v for k, v in value.items() if k != "kind"}
        check_kwargs(TASKS.load(kind), options, f"task kind {kind!r}")
        spec = TaskSpec(kind=kind, options=frozen(options))
        spec.build()  # factories are pure and cheap: their own checks (e.g. unknown principle) run now
        return spec

    def params_override(value: Any, _t: Any) -> FrozenMap:
        if not isinstance(value, Mapping):
            raise Mismatch("a table", value)
        converter.structure(dict(value), GenerationParams)  # validates keys and values
        return frozen(dict(value))

    params_base = make_dict_structure_fn(GenerationParams, converter, _cattrs_forbid_extra_keys=True)

    def params(value: Any, t: Any) -> GenerationParams:
        if not isinstance(value, Mapping):
            raise Mismatch("a table", value)
        if "num_generations" not in value:
            return params_base(value, t)
        msg = "set num_generations in [run] (or with --num-generations), not in [params]"
        errors: list[Exception] = [at("num_generations", ConfigError(msg), int).exceptions[0]]
        try:
            params_base({k: v for k, v in value.items() if k != "num_generations"}, t)
        except ClassValidationError as exc:
            errors.extend(exc.exceptions)
        raise ClassValidationError("invalid [params]", errors, GenerationParams)

    converter.register_structure_hook(BackendConfig, backend)
    converter.register_structure_hook(TaskSpec, task)
    converter.register_structure_hook(PromptFormat, _strict(lambda v: isinstance(v, str), "str", check_format))
    converter.register_structure_hook(ObjectPath, _strict(lambda v: isinstance(v, str), "str", _importable))
    converter.register_structure_hook(ParamsOverride, params_override)
    converter.register_structure_hook(KeyMap, _str_table)
    converter.register_structure_hook(FrozenMap, _strict(lambda v: isinstance(v, Mapping), "a table", frozen_table))
    converter.register_structure_hook(GenerationParams, params)


def _importable(path: str) -> str:
    import_object(path)
    return path


#: the one converter every recipe is read with
converter = make_converter()
