"""Draw every benchmark's ratios as one bar chart and refresh the tables of figures.

Each benchmark script writes ``benchmarks/results/<name>.json``; besides its own
details, the file has a top-level ``"ratios"`` object, the common shape this
script reads::

    "ratios": {
        "fnlabel / distilabel 0.6.0, requests/s": {"value": 1.57, "target": 3.0, "better": "higher"},
        "fnlabel / raw async SDK, requests/s": {"value": 1.37, "better": "higher"},
        "fnlabel / distilabel 0.6.0, CPU us per input, k=1": {"value": 0.68, "target": 0.8, "better": "lower"}
    }

``value`` is required; ``target`` (the issue's goal) is optional; ``better`` is
``"higher"`` (default) or ``"lower"`` and says which side of the target passes.
A bare number (``"name": 1.57``) is a ratio with no target, higher is better.
Files without ``"ratios"`` are listed as skipped.

Run: ``python benchmarks/plot.py`` (needs matplotlib: ``pip install '.[docs]'``).
It saves ``benchmarks/ratios.png`` and ``docs/assets/ratios.png`` and rewrites the
table between ``<!-- ratios:start -->`` and ``<!-- ratios:end -->`` in
``benchmarks/README.md`` and ``docs/benchmarks.md``. ``--check`` only tells
whether those tables match the results (exit 1 if not); tests/test_docs.py runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = (ROOT / "benchmarks" / "ratios.png", ROOT / "docs" / "assets" / "ratios.png")
TABLES = (ROOT / "benchmarks" / "README.md", ROOT / "docs" / "benchmarks.md")
START, END = "<!-- ratios:start -->", "<!-- ratios:end -->"


class Ratio(NamedTuple):
    bench: str
    name: str
    value: float
    target: float | None
    better: str  # "higher" | "lower"

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target


def load(results: Path = RESULTS) -> tuple[list[Ratio], list[str]]:
    """Every ratio of every result file, in file then insertion order; and the files skipped."""
    ratios: list[Ratio] = []
    skipped: list[str] = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        block = data.get("ratios") if isinstance(data, dict) else None
        if not isinstance(block, dict) or not block:
            skipped.append(path.name)
            continue
        for name, entry in block.items():
            ratios.append(_ratio(path, name, entry))
    return ratios, skipped


def _ratio(path: Path, name: str, entry: Any) -> Ratio:
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        entry = {"value": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), (int, float)):
        raise ValueError(f"{path}: ratios.{name}: expected a number or {{'value': number, ...}}, got {entry!r}")
    better = entry.get("better", "higher")
    if better not in ("higher", "lower"):
        raise ValueError(f"{path}: ratios.{name}.better: expected 'higher' or 'lower', got {better!r}")
    target = entry.get("target")
    return Ratio(path.stem, name, float(entry["value"]), None if target is None else float(target), better)


def table(ratios: list[Ratio]) -> str:
    """The Markdown table of figures."""
    lines = ["| benchmark | ratio | value | target | |", "|---|---|---:|---:|---|"]
    for r in ratios:
        target = "" if r.target is None else ("≥ " if r.better == "higher" else "≤ ") + f"{r.target:g}"
        mark = {True: "met", False: "**missed**", None: ""}[r.met]
        lines.append(f"| {r.bench} | {r.name} | {r.value:.2f} | {target} | {mark} |")
    return "\n".join(lines)


def with_table(text: str, body: str, path: Path) -> str:
    """``text`` with the block between the markers replaced by ``body``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path}: no {START} ... {END} block to hold the table")
    return pattern.sub(lambda _m: f"{START}\n{body}\n{END}", text, count=1)


def draw(ratios: list[Ratio], paths: tuple[Path, ...] = IMAGES) -> None:
    """A horizontal bar per ratio, from parity (1x) to its value, with its target marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    n = len(ratios)
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.55 * n))
    ys = list(range(n))[::-1]
    colors = {True: "#2e8b57", False: "#c0392b", None: "#4a7fb5"}
    for y, r in zip(ys, ratios):
        ax.barh(y, r.value - 1, left=1, height=0.6, color=colors[r.met])
        side = "left" if r.value >= 1 else "right"
        ax.text(r.value * (1.03 if r.value >= 1 else 0.97), y, f"{r.value:.2f}x", va="center", ha=side, fontsize=9)
        if r.target is not None:
            ax.plot([r.target, r.target], [y - 0.4, y + 0.4], color="black", lw=2)
            sign = "≥" if r.better == "higher" else "≤"
            ax.text(r.target, y + 0.42, f"{sign} {r.target:g}x", ha="center", va="bottom", fontsize=7)
    values = [r.value for r in ratios] + [r.target for r in ratios if r.target is not None] + [1.0]
    lo, hi = min(values) / 1.6, max(values) * 1.6
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.axvline(1, color="grey", lw=1, ls="--")
    labels = [f"{r.bench}: {r.name}" + (" (lower is better)" if r.better == "lower" else "") for r in ratios]
    ax.set_yticks(ys, [textwrap.fill(label, 46) for label in labels], fontsize=8.5)
    ax.set_ylim(-0.7, n - 0.2)
    ax.set_xlabel("ratio (log scale; each bar starts at parity, 1x)")
    ax.set_title("fnlabel benchmark ratios", fontsize=12)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(
        handles=[
            Patch(color=colors[True], label="target met"),
            Patch(color=colors[False], label="target missed"),
            Patch(color=colors[None], label="no target (reported)"),
            Line2D([], [], color="black", lw=2, label="target"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08 - 0.6 / (1.6 + 0.55 * n)),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the tables match the results")
    args = parser.parse_args(argv)
    ratios, skipped = load()
    for name in skipped:
        print(f"skipped benchmarks/results/{name}: no 'ratios' block (see benchmarks/plot.py)", file=sys.stderr)
    if not ratios:
        print("no ratios in benchmarks/results/*.json", file=sys.stderr)
        return 1
    body = table(ratios)
    stale = []
    for path in TABLES:
        text = path.read_text(encoding="utf-8")
        new = with_table(text, body, path)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)}: table of figures is out of date; run python benchmarks/plot.py",
                file=sys.stderr,
            )
        return 1 if stale else 0
    draw(ratios)
    print(body)
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in (*IMAGES, *TABLES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
