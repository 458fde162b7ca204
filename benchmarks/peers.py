"""Peer installs for side-by-side benchmarks.

distilabel 0.6.0 only imports with old pins, so it lives in its own virtual
environment, created on first use (about a minute) and reused afterwards.
Benchmarks run peer code in that venv's interpreter as a subprocess and read
one JSON line back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

DISTILABEL_PINS = ["distilabel[openai]==0.6.0", "huggingface_hub==0.19.4", "openai==1.6.1", "httpx<0.28"]
VENV = Path(os.environ.get("FNLABEL_BENCH_DISTILABEL_VENV", Path.home() / ".cache/fnlabel-bench/venv-distilabel-0.6.0"))


def distilabel_python() -> str:
    """The interpreter of a venv where distilabel 0.6.0 imports (created if missing)."""
    python = VENV / "bin" / "python"
    ok = (
        python.exists()
        and subprocess.run([str(python), "-c", "import distilabel.llm"], capture_output=True).returncode == 0
    )
    if not ok:
        print(f"creating {VENV} with {' '.join(DISTILABEL_PINS)} ...", file=sys.stderr)
        venv.create(VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DISTILABEL_PINS], check=True)
    return str(python)


def run_peer(code: str, *args: str, timeout: float = 600) -> dict:
    """Run ``code`` under distilabel's interpreter; it must print one JSON object last."""
    proc = subprocess.run([distilabel_python(), "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"distilabel peer failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
