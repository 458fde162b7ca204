"""Backends: pure ``generate(prompts, params)`` functions made from config records.

Each module holds one backend: a frozen ``*Config`` record (with a ``kind``
ClassVar naming its recipe kind and a ``build()`` method returning the
``generate`` callable) plus a convenience factory. Heavy libraries are imported
inside ``build()``, so importing :mod:`fnlabel.backends` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from fnlabel.backends.echo import Echo, EchoConfig, echo
from fnlabel.errors import ConfigError

__all__ = ["BACKENDS", "Echo", "EchoConfig", "config_class", "echo"]

#: recipe ``kind`` -> "module:ConfigClass", imported only when that kind is used
BACKENDS: dict[str, str] = {
    "echo": "fnlabel.backends.echo:EchoConfig",
    "llama-cpp": "fnlabel.backends.llama_cpp:LlamaCppConfig",
    "transformers": "fnlabel.backends.transformers:TransformersConfig",
    "vllm": "fnlabel.backends.vllm:VLLMConfig",
    "openai": "fnlabel.backends.openai:OpenAIConfig",
    "inference-endpoints": "fnlabel.backends.inference_endpoints:InferenceEndpointsConfig",
}


def config_class(kind: str) -> type[Any]:
    """The config record class of backend ``kind`` (its module is imported now, its library is not)."""
    if kind not in BACKENDS:
        raise ConfigError(f"unknown backend kind {kind!r}; known kinds: {', '.join(BACKENDS)}")
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)
