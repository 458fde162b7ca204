"""`import fnlabel` stays light: no backend library, well under 0.2 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fnlabel

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "llama_cpp", "openai", "huggingface_hub", "aiohttp", "numpy", "jinja2")

PROBE = """
import json, sys, time
start = time.perf_counter()
import fnlabel
took = time.perf_counter() - start
print(json.dumps({"took": took, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)}))
"""


def probe() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_loads_no_backend_library_and_is_fast():
    # the one timed check the foundation issue asks for; the best of a few fresh interpreters
    # keeps a busy CI machine from failing it
    runs = [probe() for _ in range(5)]
    assert runs[0]["loaded"] == [], runs[0]["loaded"]
    best = min(r["took"] for r in runs)
    assert best < 0.2, f"import fnlabel took {best:.3f} s at best (runs: {[round(r['took'], 3) for r in runs]})"


def test_public_surface():
    for name in fnlabel.__all__:
        assert hasattr(fnlabel, name), name
    for name in (
        "llm",
        "LLMOutput",
        "GenerationParams",
        "Prompt",
        "format_prompt",
        "Task",
        "threaded",
        "with_prompt_format",
        "with_prompt_formatting_fn",
        "GenerationFailure",
    ):
        assert name in fnlabel.__all__
    assert callable(fnlabel.backends.echo) and callable(fnlabel.tasks.text_generation)
    assert issubclass(fnlabel.BackendError, fnlabel.FnlabelError)
    assert issubclass(fnlabel.RecipeError, fnlabel.ConfigError) and issubclass(fnlabel.ConfigError, ValueError)
