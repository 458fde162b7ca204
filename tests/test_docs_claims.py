"""Documented behaviour of the ``fnlabel`` command that the docs pages promise (docs/cache.md, docs/cli.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_run_says_when_the_cache_falls_back_next_to_the_output(tmp_path):
    """docs/cache.md: when the default cache folder cannot be written, the file goes next to
    the output *with a warning*; `fnlabel run` must show that warning (its log is otherwise off)."""
    (tmp_path / "in.jsonl").write_text('{"input": "hi"}\n')
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n[run]\ninput = "in.jsonl"\noutput = "o.jsonl"\n'
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    env = {**os.environ, "PYTHONPATH": str(REPO), "FNLABEL_CACHE_DIR": str(blocker / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "fnlabel", "run", str(recipe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.jsonl.cache.sqlite").exists()
    assert "o.jsonl.cache.sqlite instead" in proc.stderr, proc.stderr
