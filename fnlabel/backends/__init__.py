"""Backends: pure ``generate(prompts, params)`` functions made from config records.

Each module holds one backend: a frozen ``*Config`` record (with a ``kind``
ClassVar naming its recipe kind and a ``build()`` method returning the
``generate`` callable) plus a convenience factory. Heavy libraries are imported
inside ``build()``, so importing :mod:`fnlabel.backends` stays cheap. Installed
plugins add kinds through entry points in group ``fnlabel.backends`` (name: the
kind, value: the config class); see docs/plugins.md.
"""

from __future__ import annotations

from typing import Any

import attrs

from fnlabel.backends.echo import Echo, EchoConfig, echo
from fnlabel.errors import ConfigError
from fnlabel.registry import Registry

__all__ = ["BACKENDS", "Echo", "EchoConfig", "config_class", "echo"]


def _check_config_class(kind: str, cls: Any) -> None:
    """A backend kind must name an attrs config record with ``build()`` and ``kind`` = the recipe kind."""
    fix = "see docs/plugins.md: a backend's entry point names its attrs config class"
    if not (isinstance(cls, type) and attrs.has(cls) and callable(getattr(cls, "build", None))):
        raise ConfigError(
            f"backend kind {kind!r} names {cls!r}, which is not an attrs config class with build(); {fix}"
        )
    if getattr(cls, "kind", None) != kind:
        raise ConfigError(
            f"backend kind {kind!r} names {cls.__qualname__}, whose kind ClassVar is {getattr(cls, 'kind', None)!r}; "
            f"set kind: ClassVar[str] = {kind!r} on the class ({fix})"
        )


#: recipe ``kind`` -> its config class (built-ins imported on first use, then the ``fnlabel.backends`` plugins)
BACKENDS: Registry = Registry(
    "backend",
    "fnlabel.backends",
    {
        "echo": "fnlabel.backends.echo:EchoConfig",
        "llama-cpp": "fnlabel.backends.llama_cpp:LlamaCppConfig",
        "transformers": "fnlabel.backends.transformers:TransformersConfig",
        "vllm": "fnlabel.backends.vllm:VLLMConfig",
        "openai": "fnlabel.backends.openai:OpenAIConfig",
        "inference-endpoints": "fnlabel.backends.inference_endpoints:InferenceEndpointsConfig",
    },
    check=_check_config_class,
)


def config_class(kind: str) -> type[Any]:
    """The config record class of backend ``kind`` (its module is imported now, its library is not)."""
    return BACKENDS.load(kind)
