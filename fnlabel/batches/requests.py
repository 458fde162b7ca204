"""Batch API requests: one line per generation the cache is missing, written to files of bounded size.

A batch-mode run composes the recipe's LLM as usual, with the per-sample cache, and then
puts a :class:`Collector` where the cache's backend was. The cache looks up every generation
as always; for those it is missing, the collector writes one request line (the body the
openai backend would send, with ``n = 1``) instead of calling the server, and answers
:data:`~fnlabel.errors.BATCH_PENDING`. The line's ``custom_id`` names the cache entry
(:func:`custom_id`), so a result goes straight into the cache, wherever it comes from.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

import attrs

from fnlabel.backends.base import describe_backend
from fnlabel.combinators.cache import CachedBackend
from fnlabel.combinators.store import identity_hash
from fnlabel.errors import BATCH_PENDING, ConfigError
from fnlabel.llm import LLM, map_llms
from fnlabel.types import FormattedPrompt, GenerationFailure, GenerationParams, RawGeneration

__all__ = ["custom_id", "parse_custom_id", "Account", "RequestFile", "RequestFiles", "Collector", "collecting"]

_CUSTOM_ID = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{32})-([0-9]{1,6})(?:\+([0-9]{1,6}))?$")


def custom_id(identity: bytes, key: bytes, index: int, count: int = 1) -> str:
    """The ``custom_id`` of generation ``index`` of cache entry ``key`` of the backend tagged ``identity``
    (``count`` > 1: of generations ``index..index+count-1``, all the same text: a greedy request).

    Examples:
        >>> cid = custom_id(bytes(8), bytes(16), 3)
        >>> cid
        '0000000000000000-00000000000000000000000000000000-3'
        >>> parse_custom_id(cid) == (bytes(8), bytes(16), 3, 1)
        True
        >>> parse_custom_id(custom_id(bytes(8), bytes(16), 0, 4))[3]
        4
    """
    return f"{identity.hex()}-{key.hex()}-{index}" + (f"+{count}" if count > 1 else "")


def parse_custom_id(value: Any) -> tuple[bytes, bytes, int, int] | None:
    """``(identity tag, entry key, first generation index, generations)`` of a ``custom_id`` fnlabel wrote, else None."""
    found = _CUSTOM_ID.match(value) if isinstance(value, str) else None
    if found is None:
        return None
    return bytes.fromhex(found[1]), bytes.fromhex(found[2]), int(found[3]), int(found[4] or 1)


@attrs.frozen
class Account:
    """Where a request goes: an OpenAI-compatible API and the variable holding its key (never the key)."""

    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    organization: str | None = None


@attrs.define
class RequestFile:
    """A finished request file: its path, the endpoint all its lines ask, the account it goes to, its size."""

    path: str
    url: str
    account: Account
    requests: int = 0
    bytes: int = 0


class RequestFiles:
    """Request lines written to ``folder/<stem>-0001.jsonl``, ... one file per account and endpoint at a time.

    A file is closed (and a new one opened) before it would pass ``max_requests`` lines or
    ``max_bytes`` bytes. A ``custom_id`` already written this run is not written again (two input
    rows with the same prompt share a cache entry). Safe to call from several threads.
    ``name``: every line goes to one file of that name (then ``<stem>-2<suffix>``, ... past the
    limits), whatever its account and endpoint (``fnlabel batch export``).
    """

    def __init__(
        self, folder: Path, stem: str, max_requests: int, max_bytes: int, first: int = 1, name: str | None = None
    ) -> None:
        self.folder, self.stem, self.name = folder, stem, name
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.number = first
        self.done: list[RequestFile] = []
        self.written: set[str] = set()
        self._open: dict[tuple[Account, str], tuple[RequestFile, Any]] = {}
        self._lock = threading.Lock()

    def add(self, account: Account, url: str, cid: str, body: dict[str, Any]) -> None:
        line = (json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body}) + "\n").encode()
        if len(line) > self.max_bytes:
            raise ValueError(f"the request is {len(line)} bytes, more than [run] batch_max_bytes = {self.max_bytes}")
        with self._lock:
            if cid in self.written:
                return
            self.written.add(cid)
            slot = (Account(), "") if self.name is not None else (account, url)
            current = self._open.get(slot)
            if current is not None and (
                current[0].requests >= self.max_requests or current[0].bytes + len(line) > self.max_bytes
            ):
                self._finish(slot)
                current = None
            if current is None:
                path = self._path()
                current = self._open[slot] = (RequestFile(str(path), url, account), open(path, "wb"))  # noqa: SIM115
            record, handle = current
            handle.write(line)
            record.requests += 1
            record.bytes += len(line)

    def _path(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        n, self.number = self.number, self.number + 1
        if self.name is None:
            return self.folder / f"{self.stem}-{n:04d}.jsonl"
        first = Path(self.name)
        return self.folder / (first.name if n == 1 else f"{first.stem}-{n}{first.suffix}")

    def _finish(self, slot: tuple[Account, str]) -> None:
        record, handle = self._open.pop(slot)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self.done.append(record)

    def close(self) -> list[RequestFile]:
        """Finish every file (written and fsynced); the files of this run, in the order they were opened."""
        with self._lock:
            for slot in list(self._open):
                self._finish(slot)
            return sorted(self.done, key=lambda r: r.path)


def _is_openai(backend: Any) -> bool:
    return callable(getattr(backend, "request_body", None)) and getattr(backend, "config", None) is not None


@attrs.frozen
class Collector(CachedBackend):
    """A :class:`~fnlabel.combinators.cache.CachedBackend` whose missing generations become batch requests.

    ``files`` receives the request lines (None: none are written, as when results are imported);
    a generation whose ``custom_id`` is in ``pending`` (a batch not yet collected) is not asked
    again; one in ``failed`` (its batch line failed or expired) is that failure, unless ``resubmit``
    (``--retry-failed``) asks it again.
    """

    files: RequestFiles | None = None
    pending: Container[str] = frozenset()
    failed: Mapping[str, str] = attrs.Factory(dict)
    resubmit: bool = False

    def __attrs_post_init__(self) -> None:
        if not _is_openai(self.backend):
            raise ConfigError(
                f"batch mode needs the openai backend (an OpenAI-compatible Batch API), not "
                f'{describe_backend(self.backend)}: set [backend] kind = "openai", or run without --batch'
            )

    def _generate(
        self, batch: list[tuple[bytes, list[int]]], prompts: list[FormattedPrompt], params: GenerationParams
    ) -> list[list[RawGeneration]]:
        ident = identity_hash(self.identity)
        cfg: Any = self.backend.config  # type: ignore[attr-defined]
        account = Account(cfg.base_url, cfg.api_key_env, cfg.organization)
        out: list[list[RawGeneration]] = []
        for (key, missing), prompt in zip(batch, prompts):
            chat = not isinstance(prompt, str)
            url = "/v1/chat/completions" if chat else "/v1/completions"
            # greedy: one request stands for every missing generation (as the openai backend asks once)
            greedy = params.temperature == 0 and missing == list(range(missing[0], missing[0] + len(missing)))
            slots = [(0, missing[0], len(missing))] if greedy else [(m, i, 1) for m, i in enumerate(missing)]
            gens: list[RawGeneration] = []
            for m, index, count in slots:
                cid = custom_id(ident, key, index, count)
                state: RawGeneration = GenerationFailure(BATCH_PENDING)
                if cid in self.failed and not self.resubmit:
                    state = GenerationFailure(self.failed[cid])
                elif cid not in self.pending and self.files is not None:
                    # generation m of this call: the seed the openai backend gives it when it fans out
                    body = self.backend.request_body(params, 1, m, chat)  # type: ignore[attr-defined]
                    body["messages" if chat else "prompt"] = prompt
                    try:
                        self.files.add(account, url, cid, body)
                    except ValueError as exc:  # too large for a batch file: this generation fails, not the run
                        state = GenerationFailure(f"not submitted: {exc}")
                gens.extend([state] * count)
            out.append(gens)
        return out


def collecting(
    files: RequestFiles | None, pending: Container[str], failed: Mapping[str, str], resubmit: bool
) -> Callable[[Any], Any]:
    """A ``wrap_llm`` for :func:`fnlabel.run.run_recipe`: every cached backend of the LLM becomes a
    :class:`Collector` (ConfigError for a backend that is not openai, or an LLM built in a child process)."""

    def wrap(member: LLM) -> LLM:
        backend = member.backend
        if not isinstance(backend, CachedBackend):
            raise ConfigError("batch mode needs the per-sample cache: run without --no-cache")
        return attrs.evolve(
            member,
            backend=Collector(
                backend.backend, backend.store, backend.batch_size, backend.identity, files, pending, failed, resubmit
            ),
        )

    def apply(llm: Any) -> Any:
        return map_llms(llm, wrap, "batch", "batch mode runs the LLM in this process: set in_process = false")

    return apply
