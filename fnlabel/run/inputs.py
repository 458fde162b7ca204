"""Where a run's data enters: input rows read, as a stream, from a file or a Hugging Face dataset.

Inputs are chosen by extension: ``.jsonl``/``.ndjson``, ``.json`` (a list of
objects), ``.csv``, ``.parquet`` (extra ``fnlabel[parquet]``) or ``hf:name[:split]``
(a Hugging Face dataset, extra ``fnlabel[datasets]``). :func:`open_input` checks the
source and returns an :class:`InputSource` whose rows are read one at a time each time
it is iterated, so a run's memory does not grow with its input (a ``.json`` list is the
exception: JSON has no way to read one item of a list without reading the list).
Every error names the file, the line or row, and the fix.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import InputError
from fnlabel.validators import INPUT_SUFFIXES

__all__ = ["InputSource", "InputData", "open_input", "read_input", "INPUT_FORMATS"]

#: what ``--input`` takes (the suffixes are :data:`fnlabel.validators.INPUT_SUFFIXES`)
INPUT_FORMATS = (*INPUT_SUFFIXES, "hf:name[:split]")

#: ``(where, row)`` pairs: where a row came from ("line 4", "row 12"), and the row
Rows = Iterator[tuple[str, dict[str, Any]]]


@attrs.frozen
class InputSource:
    """An input, read row by row each time it is iterated: ``for where, row in source``."""

    source: str
    read: Callable[[], Rows] = attrs.field(repr=False)
    limit: int | None = None

    def __iter__(self) -> Rows:
        rows = self.read()
        return rows if self.limit is None else islice(rows, self.limit)

    def locate(self, where: str) -> str:
        """``"in.jsonl line 4"``: the source and the place of one row, for messages."""
        return f"{self.source} {where}"


@attrs.frozen
class InputData:
    """Input rows read into memory, with where each came from (``"line 4"``, ``"row 12"``)."""

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


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 file; bytes that are not UTF-8 are an error naming their line."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a leading BOM (Excel, some editors) is not text
                raw = raw[3:]
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path} line {n}: not UTF-8 text (byte {raw[exc.start : exc.start + 1]!r} at column "
                    f"{exc.start + 1}); save the file as UTF-8"
                ) from exc


def _read_jsonl(path: Path) -> Rows:
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {n}: invalid JSON ({exc.msg}); each line must be one JSON object") from exc
        if not isinstance(row, dict):
            raise InputError(f"{path} line {n}: expected a JSON object ({{...}}), got {type(row).__name__}")
        yield f"line {n}", row


def _read_json(path: Path) -> Rows:
    text = "".join(line for _, line in _lines(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from exc
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects ([{{...}}, ...]), got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise InputError(f"{path} item {i}: expected a JSON object ({{...}}), got {type(row).__name__}")
        yield f"item {i}", row


class _Numbered:
    """The lines of a file for csv.reader, keeping the number of the line each record starts on."""

    def __init__(self, path: Path) -> None:
        self.lines = _lines(path)
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for number, line in self.lines:
            self.number = number
            yield line


def _read_csv(path: Path) -> Rows:
    default_limit = csv.field_size_limit(2**31 - 1)  # a field may be a whole document (default: 128 KiB)
    try:
        reader = csv.reader(_Numbered(path))  # not DictReader: it skips blank lines without saying where a row starts
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader, None)
            except csv.Error as exc:
                raise InputError(f"{path} line {start}: not valid CSV ({exc})") from exc
            if record is None:
                return
            if not record:  # a blank line
                continue
            if header is None:
                header = record
                continue
            if len(record) > len(header):
                raise InputError(f"{path} line {start}: more fields than the header has columns")
            yield f"line {start}", dict(zip(header, record + [None] * (len(header) - len(record))))
    finally:
        csv.field_size_limit(default_limit)


def _read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq  # (checked by open_input)

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        i = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield f"row {i}", row
                i += 1
    except OSError as exc:
        raise InputError(f"{path}: cannot read Parquet ({exc})") from exc


def _open_hf(spec: str) -> Callable[[], Rows]:
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
        ds = datasets.load_dataset(name, split=split)  # memory-mapped Arrow: rows are read as they are iterated
    except Exception as exc:
        raise InputError(f"{spec}: cannot load dataset {name!r} split {split!r} ({exc})") from exc
    return lambda: ((f"row {i}", dict(r)) for i, r in enumerate(ds))


_READERS: dict[str, Callable[[Path], Rows]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def open_input(source: str | os.PathLike[str], limit: int | None = None) -> InputSource:
    """The input at ``source`` (a file, by extension, or ``hf:name[:split]``), checked, to be read as a stream.

    Examples:
        >>> rows = open_input("recipes/data/questions.jsonl", limit=2)
        >>> [where for where, _row in rows]
        ['line 1', 'line 2']
    """
    spec = str(source)
    if spec.startswith("hf:"):
        return InputSource(spec, _open_hf(spec), limit)
    path = Path(spec)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{path}: unknown input format {path.suffix or '(no extension)'!r}; supported: {', '.join(INPUT_FORMATS)}"
        )
    if not path.is_file():
        raise _missing(path)
    if reader is _read_parquet:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise InputError(f"{path}: reading Parquet needs pyarrow: pip install 'fnlabel[parquet]'") from exc
        try:
            pq.ParquetFile(path)
        except Exception as exc:
            raise InputError(f"{path}: cannot read Parquet ({exc})") from exc
    return InputSource(spec, lambda: reader(path), limit)


def read_input(source: str | os.PathLike[str], limit: int | None = None) -> InputData:
    """Every row of the input at ``source`` in memory (for small inputs; ``fnlabel run`` streams them).

    Examples:
        >>> data = read_input("recipes/data/questions.jsonl", limit=2)
        >>> len(data.rows), data.where[0]
        (2, 'line 1')
    """
    opened = open_input(source, limit)
    pairs = list(opened)
    return InputData(opened.source, [row for _, row in pairs], [where for where, _ in pairs])
