"""Helpers for the recipe, io and CLI tests: a subprocess runner and test-only kinds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, ClassVar

import attrs

from fnlabel.tasks import Task
from fnlabel.types import Prompt

ROOT = Path(__file__).resolve().parent.parent
#: subprocess runs keep their per-sample cache under here (a fresh folder per run, so tests
#: never share cached generations), not in the user's cache folder
CACHE_ROOT = tempfile.mkdtemp(prefix="fnlabel-cli-cache-")


def _env() -> dict[str, str]:
    cache = tempfile.mkdtemp(dir=CACHE_ROOT)
    return {**os.environ, "PYTHONPATH": str(ROOT), "FNLABEL_CACHE_DIR": cache, "HF_DATASETS_CACHE": cache}


def fnlabel(*args: str, cwd: Path | None = None, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    """Run ``python -m fnlabel ARGS`` in a subprocess (cwd defaults to the repo root)."""
    env = _env()
    return subprocess.run(
        [sys.executable, "-m", "fnlabel", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def popen(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = _env()
    return subprocess.Popen(
        [sys.executable, "-m", "fnlabel", *args],
        cwd=cwd or ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def make_dist(root: Path, name: str, entry_points: dict[str, dict[str, str]], version: str = "0.1") -> Path:
    """A throwaway installed distribution in folder ``root``: ``NAME-VERSION.dist-info`` with its entry points.

    ``importlib.metadata`` finds it once ``root`` is on ``sys.path`` (or ``PYTHONPATH`` of a subprocess),
    as it finds a pip-installed plugin.
    """
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{kind} = {target}" for kind, target in points.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    text = Path(path).read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a JSONL file must end with a whole line"
    return [json.loads(line) for line in text.splitlines()]


def write_recipe(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def echo_recipe(tmp: Path, *, backend: str = "", run: str = "", extra: str = "", name: str = "r.toml") -> Path:
    """An echo recipe in ``tmp`` reading ``tmp/in.jsonl`` and writing ``tmp/out.jsonl`` by default."""
    return write_recipe(
        tmp / name,
        f"""{extra}
[task]
kind = "text-generation"
system_prompt = ""

[backend]
kind = "echo"
{backend}

[params]
max_new_tokens = 16

[run]
input = "{(tmp / "in.jsonl").as_posix()}"
output = "{(tmp / "out.jsonl").as_posix()}"
{run}
""",
    )


def questions(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "input": f"question number {i}"} for i in range(start, start + n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- test-only kinds (registered as plugins through the `plugin` fixture) -------------------------


@attrs.frozen
class SecretConfig:
    """A backend config with a secret field, to check that dumps never write it."""

    model: str = "m"
    api_key: str = attrs.field(default="", repr=False)
    token_env: str = "TOKEN"

    kind: ClassVar[str] = "secretive"

    def build(self) -> Any:
        from fnlabel.backends import echo

        return echo(model_name=self.model)


def _count_prompt(row: Any) -> Prompt:
    return Prompt("", f"rate {len(row['generations'])}: " + " | ".join(row["generations"]))


def _count_parse(raw: str) -> dict[str, Any]:
    return {"rating": raw.count("|") + 1}


def rate_lengths(scale: int = 10) -> Task:
    """A labeller for two-stage tests: reads ``input`` + ``generations`` (a list)."""
    return Task("rate-lengths", _count_prompt, _count_parse, ("input", "generations"), ("rating",))


def _picky_parse(raw: str) -> dict[str, Any]:
    from fnlabel.errors import ParseError

    if "odd" in raw:
        raise ParseError("expected an even answer")
    return {"answer": raw}


def picky() -> Task:
    """A task whose parse fails on outputs containing 'odd' (for parse-failure tests)."""
    return Task("picky", lambda row: Prompt("", row["input"]), _picky_parse, ("input",), ("answer",))


@attrs.frozen
class TypedConfig:
    """A backend config with the field types real backends use (literals, unions, tables, lists)."""

    dtype: typing.Literal["auto", "float32"] = "auto"
    device: int | str = "cpu"
    timeout: float | None = None
    extra_body: dict[str, Any] = attrs.Factory(dict)
    sizes: tuple[int, ...] = ()

    kind: ClassVar[str] = "typed"

    def build(self) -> Any:
        from fnlabel.backends import echo

        return echo()
