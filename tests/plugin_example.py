"""A third-party plugin, as docs/plugins.md writes one: a backend kind and a task kind.

Registered through entry points of a throwaway distribution (tests/test_plugins.py), exactly
as ``pip install fnlabel-shout`` would register them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from fnlabel.backends.base import BackendBase
from fnlabel.types import FormattedPrompt, GenerationParams, Prompt, RawGeneration, Task
from fnlabel.validators import integer, text


@attrs.frozen
class ShoutConfig:
    """Options of the shout backend (recipe ``kind = "shout"``)."""

    model_name: str = attrs.field(default="shout", validator=text())
    volume: int = attrs.field(default=1, validator=integer(1))

    kind: ClassVar[str] = "shout"

    def build(self) -> Shout:
        return Shout(self)


@attrs.frozen
class Shout(BackendBase):
    """Each generation is the prompt in capitals, with ``volume`` exclamation marks and its index."""

    config: ShoutConfig = ShoutConfig()

    @property
    def model_name(self) -> str:
        return self.config.model_name

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        bang = "!" * self.config.volume
        return [[f"{str(p).upper()}{bang} {i}" for i in range(params.num_generations)] for p in prompts]


@attrs.frozen
class Echoed:
    prefix: str

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        return Prompt("", self.prefix + row["text"])


def read_shout(raw: str) -> dict[str, Any]:
    return {"shout": raw}


def shout_task(prefix: str = "") -> Task:
    """Shout each ``text``."""
    return Task("shout", Echoed(prefix), read_shout, input_keys=("text",), output_keys=("shout",))


class NotAConfig:
    """What a broken plugin might declare: not an attrs config record."""


@attrs.frozen
class WrongKindConfig:
    kind: ClassVar[str] = "something-else"

    def build(self) -> Shout:
        return Shout()
