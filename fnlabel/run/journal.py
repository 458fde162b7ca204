"""Where a run's data leaves: output and failure files that survive a crash.

Output is JSONL, one line per input row, **in input order**: line ``i`` of the
output is input row ``i``. That order is the progress record: a rerun counts the
complete lines to know which rows are done, drops a half-written last line
(the only damage ``kill -9`` can do, since whole lines are appended and
fsynced per batch) and goes on from there. Failures go to
``<output>.failures.jsonl``, one line per failed row or generation, written
*before* the batch's output lines; on resume, records of rows past the output's
end are dropped, so neither file ever holds a duplicate. A failure to write is an
:class:`~fnlabel.errors.OutputError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fnlabel.errors import InputError, OutputError

__all__ = ["JsonlLog", "to_json_line", "normalized", "output_lock", "batch_ledger", "open_batches"]


def batch_ledger(output: Path) -> Path:
    """Where batch mode records the batches of ``output``: ``OUTPUT.batches.json`` (see fnlabel.batches)."""
    return output.with_name(output.name + ".batches.json")


def open_batches(output: Path) -> list[str]:
    """The ids (or names) of the Batch API batches of ``output`` whose results are not yet collected."""
    path = batch_ledger(output)
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
        return [str(e.get("batch_id") or e["name"]) for e in entries if not e["collected"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return [f"({path} cannot be read)"]


def to_json_line(obj: Any) -> str:
    """One JSONL line (values JSON cannot hold, like dates, are written as strings).

    Text is written as UTF-8, except in a line holding a lone surrogate (half an
    emoji, common in scraped text): UTF-8 cannot hold it, so that line is written
    with ``\\u`` escapes, which read back as the same string.
    """
    text = json.dumps(obj, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, default=str)
    return text + "\n"


def normalized(row: dict[str, Any]) -> str:
    """A canonical text of a row as the output holds it (to match output lines to input rows)."""
    return json.dumps(json.loads(json.dumps(row, default=str)), sort_keys=True)


def _fsync(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _unwritable(path: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"{path}: cannot write the output there ({exc.strerror or exc}); pass another --output (or set [run] output)"
    )


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``<path>.lock`` for a run: a second run writing the same output fails at once.

    Two runs appending to one output would interleave their rows (line ``i`` would no
    longer be row ``i``). The lock is an advisory ``flock``, so it dies with its process
    (a ``kill -9`` leaves no stale lock); where there is none (Windows), nothing is locked.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = path.with_name(path.name + ".lock")
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{path}: another fnlabel run is writing this output (it holds {lock}); "
                "wait for it to end, or pass another --output"
            ) from None
        except OSError:  # a file system without locks: run unlocked
            os.close(fd)
            yield
            return
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the run that held it removed it meanwhile: lock the new file
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


class JsonlLog:
    """An append-only JSONL file that is always whole lines.

    Opening it drops a half-written trailing line (left by a crash). ``append``
    writes whole lines and fsyncs them, so after ``kill -9`` at any moment the
    file is valid JSONL. ``rewrite`` replaces it atomically (temp file + rename).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.count = self._repair()
        except OSError as exc:  # a folder in the way, a file where a folder should be, no permission
            raise _unwritable(self.path, exc) from exc

    def _repair(self) -> int:
        if not self.path.exists():
            return 0
        count = end = pos = 0
        with self.path.open("rb+") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                n = chunk.count(b"\n")
                if n:
                    count += n
                    end = pos + chunk.rfind(b"\n") + 1
                pos += len(chunk)
            if end != pos:  # a half line from a crash: not part of the file
                fh.truncate(end)
                _fsync(fh)
        return count

    def lines(self) -> Iterator[str]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            yield from fh

    def records(self) -> Iterator[dict[str, Any]]:
        for n, line in enumerate(self.lines(), 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{self.path} line {n}: not valid JSON ({exc.msg}); was it edited by hand?") from exc

    def append(self, lines: Iterable[str]) -> None:
        """Append whole lines with one ``write`` call (O_APPEND), then fsync."""
        lines = list(lines)
        if not lines:
            return
        data = "".join(lines).encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                view = memoryview(data)
                try:
                    while view:  # a regular file takes it in one call; loop only on a short write
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:  # a full disk may take part of the lines: the file keeps only whole ones
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:  # the lines before are whole, a rerun resumes after them
            raise OutputError(
                f"{self.path}: cannot write the output there ({exc.strerror or exc}); the lines already "
                "written are kept: fix that and rerun the same command to resume"
            ) from exc
        self.count += len(lines)

    def rewrite(self, lines: Iterable[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        count = 0
        with tmp.open("w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line)
                count += 1
            _fsync(fh)
        os.replace(tmp, self.path)
        self.count = count
