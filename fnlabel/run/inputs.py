"""Where a run's data enters: input rows read from a file or a Hugging Face dataset.

Inputs are chosen by extension: ``.jsonl``/``.ndjson``, ``.json`` (a list of
objects), ``.csv``, ``.parquet`` (extra ``fnlabel[parquet]``) or ``hf:name[:split]``
(a Hugging Face dataset, extra ``fnlabel[datasets]``). Every error names the file,
the line or row, and the fix.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import InputError
from fnlabel.validators import INPUT_SUFFIXES

__all__ = ["InputData", "read_input", "INPUT_FORMATS"]

#: what ``--input`` takes (the suffixes are :data:`fnlabel.validators.INPUT_SUFFIXES`)
INPUT_FORMATS = (*INPUT_SUFFIXES, "hf:name[:split]")


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
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    with path.open(encoding="utf-8-sig") as fh:  # -sig: a leading BOM (Excel, some editors) is not text
        for n, line in enumerate(fh, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{path} line {n}: invalid JSON ({exc.msg}); each line must be one JSON object"
                ) from exc
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
    rows: list[dict[str, Any]] = []
    where: list[str] = []
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


_READERS = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


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
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{path}: unknown input format {path.suffix or '(no extension)'!r}; supported: {', '.join(INPUT_FORMATS)}"
        )
    if not path.is_file():
        raise _missing(path)
    try:
        rows, where = reader(path, limit)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc
    return InputData(spec, rows, where)
