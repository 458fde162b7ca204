"""Reading inputs and writing outputs that survive a crash.

Inputs are chosen by extension: ``.jsonl``/``.ndjson``, ``.json`` (a list of
objects), ``.csv``, ``.parquet`` (extra ``fnlabel[parquet]``) or ``hf:name[:split]``
(a Hugging Face dataset, extra ``fnlabel[datasets]``).

Output is JSONL, one line per input row, **in input order**: line ``i`` of the
output is input row ``i``. That order is the progress record: a rerun counts the
complete lines to know which rows are done, drops a half-written last line
(the only damage ``kill -9`` can do, since whole lines are appended and
fsynced per batch) and goes on from there. Failures go to
``<output>.failures.jsonl``, one line per failed row or generation, written
*before* the batch's output lines; on resume, records of rows past the output's
end are dropped, so neither file ever holds a duplicate.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import InputError

__all__ = [
    "InputData",
    "read_input",
    "JsonlLog",
    "to_json_line",
    "normalized",
    "write_parquet",
    "output_lock",
    "INPUT_FORMATS",
]

INPUT_FORMATS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", "hf:name[:split]")


@attrs.frozen
class InputData:
    """Input rows plus where each came from (``"line 4"``, ``"row 12"``) for messages."""

    source: str
    rows: list[dict[str, Any]]
    where: list[str]

    def locate(self, i: int) -> str:
        return f"{self.source} {self.where[i]}"


def _missing(path: Path) -> InputError:
    return InputError(
        f"{path}: no such input file (relative paths are read from the current directory, {Path.cwd()}; "
        "pass --input or set [run] input)"
    )


def _read_jsonl(path: Path, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    rows, where = [], []
    with path.open(encoding="utf-8-sig") as fh:  # -sig: a leading BOM (Excel, some editors) is not text
        for n, line in enumerate(fh, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} line {n}: invalid JSON ({exc.msg}); each line must be one JSON object") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path} line {n}: expected a JSON object ({{...}}), got {type(row).__name__}")
            rows.append(row)
            where.append(f"line {n}")
    return rows, where


def _read_json(path: Path, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from exc
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects ([{{...}}, ...]), got {type(data).__name__}")
    data = data[:limit] if limit is not None else data
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise InputError(f"{path} item {i}: expected a JSON object ({{...}}), got {type(row).__name__}")
    return data, [f"item {i}" for i in range(len(data))]


def _read_csv(path: Path, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    rows, where = [], []
    default_limit = csv.field_size_limit(2**31 - 1)  # a field may be a whole document (default: 128 KiB)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)  # not DictReader: it skips blank lines without saying where a row starts
            header: list[str] | None = None
            while limit is None or len(rows) < limit:
                start = reader.line_num + 1
                try:
                    record = next(reader, None)
                except csv.Error as exc:
                    raise InputError(f"{path} line {start}: not valid CSV ({exc})") from exc
                if record is None:
                    break
                if not record:  # a blank line
                    continue
                if header is None:
                    header = record
                    continue
                if len(record) > len(header):
                    raise InputError(f"{path} line {start}: more fields than the header has columns")
                rows.append(dict(zip(header, record + [None] * (len(header) - len(record)))))
                where.append(f"line {start}")
    finally:
        csv.field_size_limit(default_limit)
    return rows, where


def _read_parquet(path: Path, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"{path}: reading Parquet needs pyarrow: pip install 'fnlabel[parquet]'") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read Parquet ({exc})") from exc
    if limit is not None:
        table = table.slice(0, limit)
    rows = table.to_pylist()
    return rows, [f"row {i}" for i in range(len(rows))]


def _read_hf(spec: str, limit: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    name, _, split = spec.removeprefix("hf:").partition(":")
    if not name:
        raise InputError(f"{spec}: expected hf:NAME[:SPLIT], e.g. hf:openai/gsm8k:train")
    try:
        import datasets
    except ImportError as exc:
        raise InputError(f"{spec}: Hugging Face datasets need the extra: pip install 'fnlabel[datasets]'") from exc
    split = split or "train"
    datasets.disable_progress_bars()  # fnlabel draws its own progress
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise InputError(f"{spec}: cannot load dataset {name!r} split {split!r} ({exc})") from exc
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    rows = [dict(r) for r in ds]
    return rows, [f"row {i}" for i in range(len(rows))]


def read_input(source: str | os.PathLike[str], limit: int | None = None) -> InputData:
    """Read input rows from a file (by extension) or ``hf:name[:split]``.

    Examples:
        >>> data = read_input("recipes/data/questions.jsonl", limit=2)
        >>> len(data.rows), data.where[0]
        (2, 'line 1')
    """
    spec = str(source)
    if spec.startswith("hf:"):
        rows, where = _read_hf(spec, limit)
        return InputData(spec, rows, where)
    path = Path(spec)
    readers = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
               ".parquet": _read_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown input format {path.suffix or '(no extension)'!r}; "
                         f"supported: {', '.join(INPUT_FORMATS)}")
    if not path.is_file():
        raise _missing(path)
    try:
        rows, where = reader(path, limit)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc
    return InputData(spec, rows, where)


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


def _unwritable(path: Path, exc: OSError) -> InputError:
    return InputError(
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
            raise InputError(
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
                view = memoryview(data)
                while view:  # a regular file takes it in one call; loop only on a short write
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk: the lines before are whole, a rerun resumes after them
            raise InputError(
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


def write_parquet(jsonl: Path, dest: Path) -> None:
    """Convert a finished JSONL output to Parquet.

    A column whose values Arrow cannot hold in one type (an int in one row, a
    string or a list in another; an int beyond 64 bits; text with a lone
    surrogate) is written as JSON text; the other columns keep their types.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"{dest}: writing Parquet needs pyarrow: pip install 'fnlabel[parquet]'") from exc
    rows = [json.loads(line) for line in JsonlLog(jsonl).lines()]
    unfit = (pa.ArrowException, TypeError, ValueError, OverflowError)
    try:
        table = pa.Table.from_pylist(rows)
    except unfit:
        columns = {}
        for name in dict.fromkeys(k for r in rows for k in r):
            values = [r.get(name) for r in rows]
            try:
                columns[name] = pa.array(values)
            except unfit:
                text = [None if v is None else to_json_line(v)[:-1] for v in values]
                columns[name] = pa.array(text, pa.string())
        table = pa.table(columns)
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        raise InputError(
            f"{dest}: cannot write the output there ({exc.strerror or exc}); the rows are kept in {jsonl}: "
            "pass another --output, or fix that and rerun the same command"
        ) from exc
