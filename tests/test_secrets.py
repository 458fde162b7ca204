"""Secrets never reach a file or a terminal: keys a server echoes, credentials in URLs, dash-spelled names.

A fault server answers every request with an error body that quotes the request's own
Authorization header, as some servers and proxies do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fnlabel
from fnlabel.backends.openai import OpenAIConfig
from fnlabel.recipes import dump_recipe, loads_recipe
from fnlabel.redact import is_secret_name, scrub
from tests.recipe_helpers import ROOT, questions, write_jsonl
from tests.servers import FaultServer
from tests.servers.base import Fault

KEY = "sk-live-0123456789abcdefSECRET"


class EchoingServer(FaultServer):
    """Every request fails with HTTP 400 whose message quotes the request's Authorization header."""

    def pick(self, body, path, headers=None):
        fault = super().pick(body, path, headers)
        auth = (headers or {}).get("Authorization", "")
        return Fault.error(400, f"bad request from {auth} (quoted back)") if fault.kind == "ok" else fault


def _recipe(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "r.toml"
    path.write_text(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\n'
        f'base_url = "{url}"\napi_key_env = "FNLABEL_TEST_KEY"\nmax_retries = 0\n{extra}'
        f'[run]\ninput = "{(tmp_path / "in.jsonl").as_posix()}"\noutput = "{(tmp_path / "out.jsonl").as_posix()}"\n'
        "batch_size = 2\n"
    )
    return path


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fnlabel", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})  # fmt: skip


def test_a_key_the_server_echoes_is_never_written_nor_printed(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(6))
    recipe = _recipe(tmp_path, "URL")
    env = {"FNLABEL_TEST_KEY": KEY, "FNLABEL_CACHE_DIR": str(tmp_path / "cache")}
    with EchoingServer() as server:  # every row fails with HTTP 400 quoting the key
        recipe.write_text(recipe.read_text().replace("URL", server.url))
        ran = _cli("run", str(recipe), "--debug", env=env)
    assert ran.returncode == 0, ran.stderr
    written = "".join(p.read_text() for p in tmp_path.glob("out.jsonl*") if p.is_file())
    assert "bad request from Bearer ***" in written and KEY not in written
    assert KEY not in ran.stderr and KEY not in ran.stdout
    assert all(KEY not in p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "url", ["http://user:hunter2pass@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?api_key=abcdef123456"]
)
def test_credentials_in_base_url_are_refused_saying_how_to_pass_a_key(url: str) -> None:
    with pytest.raises(fnlabel.ConfigError, match=r"base_url carries a credential .*api_key_env"):
        OpenAIConfig(model="m", base_url=url)
    with pytest.raises(fnlabel.RecipeError, match="carries a credential") as info:
        loads_recipe(f'[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\nbase_url = "{url}"\n')
    assert "hunter2pass" not in str(info.value) and "abcdef123456" not in str(info.value)


def test_table_keys_that_name_a_secret_are_dropped_from_dumps_in_every_spelling() -> None:
    recipe = loads_recipe(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\n'
        '[backend.extra_body]\n"api-key" = "k1-SECRET"\nX-Api-Key = "k2-SECRET"\napiKey = "k3-SECRET"\nkeep = 1\n'
    )
    dumped = dump_recipe(recipe)
    assert "SECRET" not in dumped and "keep = 1" in dumped
    assert all(is_secret_name(n) for n in ("api-key", "X-Api-Key", "apiKey", "Authorization", "hf-token"))


def test_scrub_masks_registered_keys_and_url_credentials() -> None:
    fnlabel.redact.register(KEY)
    text = f"failed: Bearer {KEY} at https://bob:pa55word@example.com/v1?token=tok123456&x=1"
    assert scrub(text) == "failed: Bearer *** at https://bob:***@example.com/v1?token=***&x=1"
    fnlabel.redact.register("short")  # too short to be a key: masking it would mask ordinary words
    assert scrub("a short note") == "a short note"


def test_the_log_never_carries_a_registered_key(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    fnlabel.redact.register(KEY)
    with caplog.at_level(logging.WARNING, logger="fnlabel"):
        logging.getLogger("fnlabel").warning("server said %s", f"no: {KEY}")
    assert KEY not in caplog.text and "server said no: ***" in caplog.text


def test_failure_records_of_in_process_children_are_scrubbed_in_the_parent(tmp_path: Path) -> None:
    # the parent never builds the backend (the child reads the key), yet it knows the key to mask
    write_jsonl(tmp_path / "in.jsonl", questions(4))
    with EchoingServer() as server:
        recipe = _recipe(tmp_path, server.url).read_text().replace("[task]", "in_process = true\n[task]", 1)
        (tmp_path / "r.toml").write_text(recipe)
        env = {"FNLABEL_TEST_KEY": KEY, "FNLABEL_CACHE_DIR": str(tmp_path / "cache")}
        ran = _cli("run", str(tmp_path / "r.toml"), env=env)
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl.failures.jsonl").read_text().splitlines()]
    assert records and all(KEY not in r["error"] and "Bearer ***" in r["error"] for r in records)
