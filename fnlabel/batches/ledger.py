"""``OUTPUT.batches.json``: every request file, upload and batch of a batch-mode run, written before and after each step.

Each step that creates something at the provider is written down twice: that it is about to
happen (``upload_started``, ``create_started``), and what it made (``file_id``, ``batch_id``).
A run killed between the two finds the file or batch it may have made by its name or its input
file before making another (:mod:`fnlabel.batches.provider`), so no request is ever submitted
twice. The ledger is replaced atomically (written to a temporary file, fsynced, renamed).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import cattrs

from fnlabel.batches.requests import Account, RequestFile
from fnlabel.errors import OutputError
from fnlabel.run.journal import batch_ledger

__all__ = ["Entry", "Ledger", "FINAL", "ledger_path"]

#: batch statuses after which nothing changes
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})

_FORMAT = "fnlabel-batches-1"


def ledger_path(output: Path) -> Path:
    """Where a run writing ``output`` keeps its batches: ``OUTPUT.batches.json``."""
    return batch_ledger(output)


@attrs.define
class Entry:
    """One request file and the batch made from it.

    ``status`` is ``"built"`` until the batch exists, then the provider's; ``collected`` once its
    results are in the cache and its failed lines in the ledger.
    """

    name: str
    path: str
    url: str
    account: Account
    requests: int
    bytes: int
    upload_started: float | None = None
    file_id: str | None = None
    create_started: float | None = None
    batch_id: str | None = None
    status: str = "built"
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    collected: bool = False
    error: str | None = None

    @property
    def filename(self) -> str:
        return Path(self.path).name

    def custom_ids(self) -> Iterator[str]:
        """The ``custom_id`` of each line of the request file (kept until the batch is collected)."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below, after the lines are read
        except FileNotFoundError:
            raise OutputError(
                f"{self.path} is gone: it holds the requests of batch {self.name} ({self.batch_id or 'not created'}), "
                "which fnlabel reads until it collects the batch; restore it"
            ) from None
        with handle:
            for line in handle:
                yield json.loads(line)["custom_id"]


@attrs.define
class Ledger:
    """The batches of one output (see the module doc). ``failed`` maps a ``custom_id`` to why its line failed."""

    path: Path
    token: str = attrs.Factory(lambda: secrets.token_hex(4))
    entries: list[Entry] = attrs.Factory(list)
    failed: dict[str, str] = attrs.Factory(dict)

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """The ledger at ``path``, or a new empty one (nothing is written until :meth:`save`)."""
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != _FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {_FORMAT!r}")
            entries = cattrs.structure(data["entries"], list[Entry])
            return cls(path, data["token"], entries, dict(data["failed"]))
        except (ValueError, KeyError, TypeError, cattrs.BaseValidationError) as exc:
            raise OutputError(
                f"{path} cannot be read ({exc}): it records this output's Batch API batches; restore it, or "
                "delete it to forget them (requests of batches still running would then be submitted again)"
            ) from None

    def save(self) -> None:
        data = {
            "format": _FORMAT,
            "token": self.token,
            "entries": cattrs.unstructure(self.entries),
            "failed": self.failed,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @property
    def folder(self) -> Path:
        """Where the request files are kept until their batches are collected (then deleted): ``OUTPUT.batches/``."""
        return self.path.with_name(self.path.name.removesuffix(".json"))

    @property
    def stem(self) -> str:
        return f"fnlabel-{self.token}"

    def next_number(self) -> int:
        return 1 + max((int(e.name) for e in self.entries), default=0)

    def add(self, files: list[RequestFile], resubmitted: set[str]) -> list[Entry]:
        """Record new request files (and forget the failures of the lines they ask again); saved."""
        new = [
            Entry(
                Path(f.path).stem.rsplit("-", 1)[-1], str(Path(f.path).resolve()), f.url, f.account, f.requests, f.bytes
            )
            for f in files
        ]
        self.entries.extend(new)
        for cid in resubmitted:
            self.failed.pop(cid, None)
        self.save()
        return new

    def open_entries(self) -> list[Entry]:
        """The entries whose results are not yet in the cache."""
        return [e for e in self.entries if not e.collected]

    def pending(self) -> set[str]:
        """The ``custom_id`` s of every request not yet collected (read from their request files)."""
        return {cid for e in self.open_entries() for cid in e.custom_ids()}

    def stamp(self, entry: Entry, **changes: Any) -> None:
        """Change ``entry`` and save at once."""
        for name, value in changes.items():
            setattr(entry, name, value)
        self.save()

    def describe(self) -> list[str]:
        """One line per batch not yet collected: its name, id, status and requests done."""
        lines = []
        for e in self.open_entries():
            done = f"{e.completed + e.failed}/{e.requests} requests done" if e.batch_id else f"{e.requests} requests"
            lines.append(f"{e.name}: {e.batch_id or 'not yet created'} {e.status}, {done}")
        return lines
