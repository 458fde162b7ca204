"""What ``fnlabel run`` shows: a live display on a terminal, plain periodic lines otherwise, and the summary.

On a terminal, :class:`RunDisplay` draws a `rich <https://github.com/Textualize/rich>`_
progress display: rows done, generations/s, output tokens/s, failures, generations cut at
``max_new_tokens``, cost so far, elapsed time and ETA. When stderr is not a terminal
(a log file, CI, a pipe) it writes one plain line every ``FNLABEL_PROGRESS_INTERVAL``
seconds (default 30) instead, so a log shows how the run goes without control characters.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, TextIO

from fnlabel.run.batch import usd

if TYPE_CHECKING:
    from fnlabel.run.runner import Progress

__all__ = ["RunDisplay", "status_line", "print_summary"]

#: seconds between two plain progress lines when stderr is not a terminal
DEFAULT_INTERVAL = 30.0


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _rates(p: Progress) -> str:
    t = p.elapsed
    gen = p.generations / t if t > 0 else 0.0
    tok = p.usage.output_tokens / t if t > 0 else 0.0
    return f"{gen:.1f} gen/s  {tok:,.0f} tok/s"


def _status(p: Progress) -> str:
    parts = [f"{p.failed_rows} failed", f"{p.usage.truncated} truncated"]
    if p.usage.cost is not None:
        parts.append(usd(p.usage.cost))
    return "  ".join(parts)


def status_line(p: Progress) -> str:
    """One plain line of where a run stands.

    Examples:
        >>> from fnlabel.run.batch import Usage
        >>> from fnlabel.run.runner import Progress
        >>> status_line(Progress(30, 120, 60, 1, Usage(900, 3000, 2, 0.021), 10.0))
        '30/120 rows (25%)  6.0 gen/s  300 tok/s  1 failed  2 truncated  $0.0210  ETA 0:00:30'
    """
    share = f"{p.rows_done * 100 // p.rows_todo}%" if p.rows_todo else "100%"
    eta = _clock(p.elapsed / p.rows_done * (p.rows_todo - p.rows_done)) if p.rows_done else "?"
    return f"{p.rows_done}/{p.rows_todo} rows ({share})  {_rates(p)}  {_status(p)}  ETA {eta}"


class RunDisplay:
    """The ``progress`` callback of a CLI run, and where its log lines go.

    Args:
        stream: where to draw (stderr).
        live: draw the rich display; None: when ``stream`` is a terminal.
        interval: seconds between plain lines (None: ``$FNLABEL_PROGRESS_INTERVAL``, else 30).
    """

    def __init__(self, stream: TextIO, live: bool | None = None, interval: float | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        if interval is None:
            interval = float(os.environ.get("FNLABEL_PROGRESS_INTERVAL") or DEFAULT_INTERVAL)
        self.interval = interval
        self._bar: Any = None
        self._task: Any = None
        self._last = time.monotonic()

    def __call__(self, p: Progress) -> None:
        if self.live:
            self._draw(p)
        elif p.rows_done and p.rows_done < p.rows_todo and time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            self.log(status_line(p))

    def _draw(self, p: Progress) -> None:
        if self._bar is None:
            self._start(p.rows_todo)
        self._bar.update(self._task, completed=p.rows_done, rates=_rates(p), status=_status(p))

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        console = Console(file=self.stream, force_terminal=True)
        self._bar = Bar(
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TextColumn("{task.fields[rates]}"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._bar.add_task("run", total=total, rates="", status="")
        self._bar.start()

    def log(self, message: str) -> None:
        """A line above the display (or a plain line)."""
        if self._bar is not None:
            self._bar.console.print(f"fnlabel: {message}", markup=False, highlight=False)
        else:
            print(f"fnlabel: {message}", file=self.stream, flush=True)

    def finish(self) -> None:
        """Leave the display's last state on screen."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _usage_line(s: Any) -> str | None:
    u = s.usage
    if not (u.input_tokens or u.output_tokens or u.truncated or u.cost is not None):
        return None  # the backend reported no usage (a plain-string backend), and nothing is priced
    rate = u.output_tokens / s.elapsed if s.elapsed > 0 else 0.0
    parts = [f"{u.input_tokens:,} input + {u.output_tokens:,} output tokens ({rate:,.0f} output tokens/s)"]
    if u.cost is not None:
        parts.append(f"cost {usd(u.cost)}")
    return "  " + "; ".join(parts)


def print_summary(s: Any, opts: Any, stream: TextIO, cached: bool = False) -> None:
    """The end of a run: rows, generations, tokens, cut generations, failures, cost, what to do next."""
    if opts.retry_failed:
        head = f"retried {_count(s.rows_run, 'failed row')}"
    elif s.rows_total == 0:
        head = "nothing to do: the input has no rows"
    elif s.rows_run == 0 and s.left == 0:
        head = f"nothing to do: {s.output} already has all {s.rows_total} rows"
    else:
        head = f"{_count(s.rows_run, 'row')} run"
    # the rows of the whole output that have failure records (earlier runs' too), not only this run's
    print(
        f"fnlabel: {head}; {_count(s.generations, 'generation')}; {_count(s.rows_with_failures, 'row')} with "
        f"failures; {s.rows_done}/{s.rows_total} rows in {s.output}; {s.elapsed:.1f}s",
        file=stream,
    )
    usage = _usage_line(s)
    if usage is not None:
        print(usage, file=stream)
    if s.usage.truncated:
        print(
            f'  {_count(s.usage.truncated, "generation")} cut at max_new_tokens (finish_reason "length"): '
            "raise max_new_tokens in [params] if they should be whole",
            file=stream,
        )
    for rec in s.failures[:5]:
        gen = f" generation {rec['generation']}" if rec["generation"] is not None else ""
        print(f"  {opts.input} {rec['where']}{gen}: {rec['stage']}: {rec['error']}", file=stream)
    if s.rows_with_failures:
        print(f"  every failure is recorded in {s.failures_path}; rerun with --retry-failed to retry them", file=stream)
        if cached and any(rec["stage"].endswith("parse") for rec in s.failures):
            # the cache keeps the raw output, so a retry parses the same text again
            print("  a parse failure comes back from the cache: add --no-cache to sample it again", file=stream)
    if opts.parquet and s.output != opts.output and not opts.retry_failed:
        print(f"  {opts.output} is written when every row is done: rerun the same command to complete it", file=stream)
    if s.left and not s.stopped and opts.retry_failed:
        print(f"  {s.left} rows not run yet: rerun without --retry-failed to complete", file=stream)
