"""Where the per-sample cache keeps its generations: one SQLite file.

:class:`SQLiteStore` maps ``(entry key, generation index)`` to a raw output: its text, and
the generation's metadata (finish reason, token counts, logprobs) when the backend reported it.
Many threads and processes may read and write the same file at once: the
database runs in WAL mode with a busy timeout, every write is one short
``BEGIN IMMEDIATE`` transaction committed as soon as a backend call returns,
and ``INSERT OR IGNORE`` keeps the first value stored for a slot. A store
pickles as its path, so a copy sent to another process opens its own
connection there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fnlabel.errors import ConfigError, OutputError
from fnlabel.types import Generation

__all__ = ["Store", "SQLiteStore", "SCHEMA_VERSION", "identity_hash", "storable"]

log = logging.getLogger("fnlabel")

SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key BLOB NOT NULL,
    idx INTEGER NOT NULL,
    output TEXT NOT NULL,
    backend BLOB NOT NULL,
    created REAL NOT NULL,
    meta TEXT,
    PRIMARY KEY (key, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '2');
"""
#: schema 1 (no metadata) becomes 2 in place: its entries read back as plain texts
_MIGRATE_1_TO_2 = """
ALTER TABLE generations ADD COLUMN meta TEXT;
UPDATE meta SET value = '2' WHERE name = 'schema';
"""


@runtime_checkable
class Store(Protocol):
    """What the per-sample cache reads and writes: :class:`SQLiteStore`, or a proxy of one held
    elsewhere (a Ray run's replicas reach the driver's store through :mod:`fnlabel.run.ray_cache`)."""

    def get(self, keys: Sequence[bytes], num_generations: int) -> dict[bytes, dict[int, str | Generation]]:
        """The stored outputs of generations ``0..num_generations-1`` of each key (absent keys: nothing stored)."""
        ...

    def put(self, entries: Iterable[tuple[bytes, int, str | Generation]], backend: bytes, strict: bool = False) -> None:
        """Store ``(key, index, output)`` entries (first value wins)."""
        ...

    def tally(self, hits: int, misses: int) -> None:
        """Count generations served from the store and computed."""
        ...

    def close(self) -> None:
        """Release connections (reopened on next use)."""
        ...


def identity_hash(identity: str) -> bytes:
    """The 8-byte tag a backend identity is stored under (for :meth:`SQLiteStore.clear`)."""
    return hashlib.blake2b(identity.encode(), digest_size=8).digest()


# SQLite's historical limit on bound variables is 999: stay well under it
_CHUNK = 500


class SQLiteStore:
    """A cache store in one SQLite file, safe with concurrent threads and processes.

    Args:
        path: the database file (created with its folder when missing).
        timeout: seconds a writer waits for another writer's lock before giving up.

    Examples:
        >>> import tempfile, os
        >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "cache.sqlite"))
        >>> store.put([(b"k", 0, "hello")], backend=b"echo")
        >>> store.get([b"k"], 2)
        {b'k': {0: 'hello'}}
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser().absolute()
        self.timeout = float(timeout)
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[tuple[int, threading.Thread, sqlite3.Connection]] = []
        self._warned = False
        self._connect()  # fail now, naming the file, rather than at the first backend call

    # a store crosses process boundaries as its path: each process opens its own connection
    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["timeout"])  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SQLiteStore) and (self.path, self.timeout) == (other.path, other.timeout)

    def __hash__(self) -> int:
        return hash((SQLiteStore, self.path, self.timeout))

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"), self.timeout)
            # WAL + NORMAL: a committed write survives a killed process (only power loss can undo it)
            conn.execute("PRAGMA synchronous=NORMAL")
            _retry_locked(lambda: conn.executescript(_SCHEMA), self.timeout)
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is not None and row[0] == "1":
                _retry_locked(lambda: _migrate(conn), self.timeout)
                row = ("2",)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the cache file {self.path}: {exc}; pass another cache path, "
                "delete the file, or turn the cache off (--no-cache)"
            ) from exc
        if row is None or row[0] != SCHEMA_VERSION:
            conn.close()
            raise ConfigError(
                f"cache file {self.path} has schema {row[0] if row else None!r}, this fnlabel reads "
                f"{SCHEMA_VERSION!r}: delete the file or pass another cache path"
            )
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            # close the connections of threads that ended, so short-lived threads leak no files;
            # connections inherited through fork are dropped unclosed (closing one in the child
            # could checkpoint or remove the parent's WAL)
            alive = []
            for pid, thread, old in self._conns:
                if pid != os.getpid():
                    continue
                if thread.is_alive():
                    alive.append((pid, thread, old))
                else:
                    old.close()
            self._conns = [*alive, (os.getpid(), threading.current_thread(), conn)]
        return conn

    def get(self, keys: Sequence[bytes], num_generations: int) -> dict[bytes, dict[int, str | Generation]]:
        """The stored outputs of generations ``0..num_generations-1`` of each key: ``{key: {index: output}}``.

        An output is its text, or a :class:`~fnlabel.types.Generation` when metadata was stored with it.
        Keys with nothing stored are absent. A read error is logged and read as a miss.
        """
        found: dict[bytes, dict[int, str | Generation]] = {}
        try:
            conn = self._connect()
            for start in range(0, len(keys), _CHUNK):
                part = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    f"SELECT key, idx, output, meta FROM generations WHERE idx < ? AND key IN ({marks})",
                    (num_generations, *part),
                )
                for key, idx, output, meta in rows:
                    found.setdefault(bytes(key), {})[idx] = output if meta is None else _generation(output, meta)
        except sqlite3.Error as exc:
            self._warn(f"cannot read the cache file {self.path} ({exc}); computing instead")
            return {}
        return found

    def put(self, entries: Iterable[tuple[bytes, int, str | Generation]], backend: bytes, strict: bool = False) -> None:
        """Store ``(key, index, output)`` entries in one committed transaction (first value wins).

        An output is a text or a :class:`~fnlabel.types.Generation` (stored with its metadata).
        A write error is logged, not raised: the outputs of the call are still returned.
        ``strict``: a write error raises :class:`~fnlabel.errors.OutputError` (results that exist
        nowhere else, e.g. a batch's, must not be thought stored when they are not).
        """
        now = time.time()
        rows = []
        for key, idx, out in entries:
            text, meta = (out.text, _meta_json(out)) if isinstance(out, Generation) else (out, None)
            if storable(text):
                rows.append((key, idx, text, backend, now, meta))
        if not rows:
            return
        try:
            conn = self._connect()
            _retry_locked(lambda: self._write(conn, rows), self.timeout)
        except sqlite3.Error as exc:
            if strict:
                raise OutputError(f"cannot write to the cache file {self.path}: {exc}") from exc
            self._warn(f"cannot write to the cache file {self.path} ({exc}); outputs are not cached")

    @staticmethod
    def _write(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO generations (key, idx, output, backend, created, meta) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def tally(self, hits: int, misses: int) -> None:
        """Add to the counts of generations served from the file (``hits``) and computed (``misses``)."""
        with self._lock:
            self.hits += hits
            self.misses += misses

    def count(self) -> int:
        """How many generations the file holds."""
        return int(self._connect().execute("SELECT count(*) FROM generations").fetchone()[0])

    def clear(self, backend: str | bytes | None = None, older_than: float | None = None) -> int:
        """Delete stored generations and return how many were deleted.

        Args:
            backend: only those of this backend identity (``cached_llm.backend.identity``,
                or :func:`fnlabel.cache.cache_identity` of a backend) or of its hash.
            older_than: only those stored more than this many seconds ago.
        """
        where: list[str] = []
        args: list[Any] = []
        if backend is not None:
            where.append("backend = ?")
            args.append(identity_hash(backend) if isinstance(backend, str) else backend)
        if older_than is not None:
            where.append("created < ?")
            args.append(time.time() - older_than)
        sql = "DELETE FROM generations" + (" WHERE " + " AND ".join(where) if where else "")
        conn = self._connect()
        deleted: int = _retry_locked(lambda: conn.execute(sql, args).rowcount, self.timeout)
        if backend is None and older_than is None:
            conn.execute("VACUUM")
        return deleted

    def close(self) -> None:
        """Close every connection this store opened (it reopens on next use)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for pid, _thread, conn in conns:
            if pid != os.getpid():
                continue
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        self._local = threading.local()

    def _warn(self, msg: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s", msg)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()[0] == "1":  # (not by another)
            for statement in filter(str.strip, _MIGRATE_1_TO_2.split(";")):
                conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _meta_json(g: Generation) -> str:
    return json.dumps([g.finish_reason, g.input_tokens, g.output_tokens, g.logprobs], ensure_ascii=False)


def _generation(text: str, meta: str) -> str | Generation:
    try:
        finish, tokens_in, tokens_out, logprobs = json.loads(meta)
    except (ValueError, TypeError):  # written by something else: the text is still good
        return text
    return Generation(text, finish, tokens_in, tokens_out, None if logprobs is None else tuple(logprobs))


def storable(text: str) -> bool:
    """Whether SQLite can hold ``text`` (not with a lone surrogate: such an output is not cached, only returned)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _retry_locked(fn: Any, timeout: float) -> Any:
    """Run ``fn``, retrying while SQLite reports a lock (some statements skip the busy handler)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
