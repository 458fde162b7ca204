"""``--retry-failed`` in time linear in the output: new lines go to a side journal, merged once.

Rerunning the rows that have failure records must replace their output lines and their failure
records. Rewriting both files after every batch costs time quadratic in the output; instead
each retried batch is appended (whole lines, fsynced) to ``<output>.retry``, one line per output
line (``ROW<TAB>LINE``) and per new failure record (``F<TAB>RECORD``). When the retry ends,
stopped or not, :meth:`RetryJournal.merge` streams the output and the failures file once each,
swaps in the retried rows' lines and records, and replaces each file atomically; the journal is
removed last. A ``kill -9`` at any moment leaves the output and the failures file consistent with
each other (both old, or both merged); a journal left behind is merged by the next run before it
does anything else, and merging the same journal twice gives the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fnlabel.run.journal import JsonlLog, to_json_line

__all__ = ["RetryJournal", "row_of"]

#: the row of a failure record that cannot be read: such a record is dropped
UNREADABLE = 1 << 62


def row_of(line: str) -> int:
    """The ``row`` of a failure record line (``UNREADABLE`` when it cannot be read)."""
    try:
        return int(json.loads(line)["row"])
    except (ValueError, KeyError, TypeError):
        return UNREADABLE


class RetryJournal:
    """The side journal of a retry, next to the output: ``<output>.retry``."""

    def __init__(self, output_journal: Path) -> None:
        self.log = JsonlLog(output_journal.with_name(output_journal.name + ".retry"))

    @property
    def pending(self) -> bool:
        """Whether a retry left lines to merge (the journal exists)."""
        return self.log.path.exists()

    def append(self, rows: list[int], lines: list[str], failures: list[dict[str, Any]]) -> None:
        """Record one retried batch: its new output lines and failure records, in one fsynced write."""
        records = (f"F\t{to_json_line(f)}" for f in failures)
        self.log.append([*records, *(f"{row}\t{line}" for row, line in zip(rows, lines))])

    def _entries(self, failures: bool) -> Iterator[tuple[int, str]]:
        """``(row, output line)`` entries in row order, or (``failures``) ``(row, failure record)`` ones."""
        for entry in self.log.lines():
            tag, _, rest = entry.partition("\t")
            if failures and tag == "F":
                yield row_of(rest), rest
            elif not failures and tag.isdigit():
                yield int(tag), rest

    def merge(self, out: JsonlLog, fails: JsonlLog) -> int:
        """Swap the retried rows' lines into ``out`` and their records into ``fails``; remove the journal.

        Returns how many rows were merged. Each file is streamed once (the journal twice) and replaced
        atomically; only the retried rows' numbers are held in memory.
        """
        if not self.pending:
            return 0
        retried: set[int] = set()
        out.rewrite(_swap(out.lines(), self._entries(failures=False), retried))
        retried.add(UNREADABLE)  # an unreadable record is dropped too
        kept = (line for line in fails.lines() if row_of(line) not in retried)
        fails.rewrite(_by_row(kept, self._entries(failures=True)))
        os.unlink(self.log.path)
        return len(retried) - 1


def _swap(old: Iterable[str], new: Iterator[tuple[int, str]], seen: set[int]) -> Iterator[str]:
    """``old`` lines with line ``row`` replaced by each ``(row, line)`` of ``new`` (in row order); rows in ``seen``."""
    nxt = next(new, None)
    for i, line in enumerate(old):
        while nxt is not None and nxt[0] < i:  # (a row past the output's end, or out of order: not ours to place)
            nxt = next(new, None)
        if nxt is not None and nxt[0] == i:
            seen.add(i)
            yield nxt[1]
            nxt = next(new, None)
        else:
            yield line


def _by_row(old: Iterable[str], new: Iterator[tuple[int, str]]) -> Iterator[str]:
    """Both sets of failure records, in row order (each set is in row order already)."""
    nxt = next(new, None)
    for line in old:
        row = row_of(line)
        while nxt is not None and nxt[0] < row:
            yield nxt[1]
            nxt = next(new, None)
        yield line
    while nxt is not None:
        yield nxt[1]
        nxt = next(new, None)
