"""Test-only backend kinds for the Ray tests (pickled to Ray actors, so they live in an importable module)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from fnlabel.errors import BackendError


@attrs.frozen
class BrokenConfig:
    """A backend whose model cannot load (raises in ``build``, as a missing model file would)."""

    model: str = "missing.gguf"

    kind: ClassVar[str] = "broken"

    def build(self) -> Any:
        raise BackendError(f"cannot load model {self.model!r}: no such file")
