"""A finished JSONL output converted to Parquet, a chunk of rows at a time (memory does not grow with it).

Two passes over the JSONL file: the first finds each column's Arrow type over every chunk, the
second writes the chunks with that one schema. A column whose values Arrow cannot hold in one
type (an int in one row, a string or a list in another; an int beyond 64 bits; text with a lone
surrogate) is written as JSON text; the other columns keep their types.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from fnlabel.errors import OutputError
from fnlabel.run.journal import JsonlLog, to_json_line

__all__ = ["write_parquet", "CHUNK_ROWS"]

#: rows per chunk: read, typed and written together
CHUNK_ROWS = 10_000


def _chunks(jsonl: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    lines = JsonlLog(jsonl).lines()
    while chunk := [json.loads(line) for line in islice(lines, size)]:
        yield chunk


def _schema(jsonl: Path, size: int, pa: Any) -> tuple[list[str], dict[str, Any]]:
    """The columns in order, and each column's type (None: written as JSON text)."""
    unfit = (pa.ArrowException, TypeError, ValueError, OverflowError)
    names: dict[str, None] = {}
    types: dict[str, Any] = {}
    for chunk in _chunks(jsonl, size):
        names.update(dict.fromkeys(k for row in chunk for k in row))
        for name in names:
            if name in types and types[name] is None:
                continue
            try:
                found = pa.array([row.get(name) for row in chunk]).type
            except unfit:
                types[name] = None
                continue
            have = types.get(name)
            if have is None or pa.types.is_null(have):
                types[name] = found
            elif not pa.types.is_null(found) and found != have:
                try:
                    merged = pa.unify_schemas(
                        [pa.schema([(name, have)]), pa.schema([(name, found)])], promote_options="permissive"
                    )
                    types[name] = merged.field(name).type
                except unfit:
                    types[name] = None
    return list(names), types


def _table(chunk: list[dict[str, Any]], names: list[str], types: dict[str, Any], pa: Any) -> Any:
    columns = {}
    for name in names:
        values = [row.get(name) for row in chunk]
        if types.get(name) is None:
            columns[name] = pa.array([None if v is None else to_json_line(v)[:-1] for v in values], pa.string())
        else:
            columns[name] = pa.array(values, types[name])
    return pa.table(columns)


def write_parquet(jsonl: Path, dest: Path, chunk_rows: int = CHUNK_ROWS) -> None:
    """Write the JSONL output ``jsonl`` as the Parquet file ``dest`` (replaced atomically)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OutputError(f"{dest}: writing Parquet needs pyarrow: pip install 'fnlabel[parquet]'") from exc
    names, types = _schema(jsonl, chunk_rows, pa)
    schema = pa.schema([(n, pa.string() if types.get(n) is None else types[n]) for n in names])
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in _chunks(jsonl, chunk_rows):
                writer.write_table(_table(chunk, names, types, pa))
        os.replace(tmp, dest)
    except OSError as exc:
        raise OutputError(
            f"{dest}: cannot write the output there ({exc.strerror or exc}); the rows are kept in {jsonl}: "
            "pass another --output, or fix that and rerun the same command"
        ) from exc
