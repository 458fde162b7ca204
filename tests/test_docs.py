"""The docs never rot: every ```python snippet runs, the site builds, doctests pass.

Snippets. Each page (README.md, docs/*.md, docs/**/*.md) is one test: its
```python blocks run in order in one namespace (so a later block may use names
from an earlier one), with the repository root as working directory. They run
for real, against the echo backend or the embedded model.

Markers (HTML comments, invisible on the site), on the last non-blank line
before a fence:

* ``<!-- docs-test: skip: REASON -->`` — do not run the next block (a reason
  is required). Use it only for code that cannot run here: a server, a GPU, the
  network, an API key, or code of another library (distilabel 0.x "before"
  snippets). A skipped block is still compiled, so its syntax cannot rot.

Anywhere in a page:

* ``<!-- docs-test: slow -->`` — the page's test gets ``@pytest.mark.slow``
  (it loads a real model).

Only blocks whose info string starts with ``python`` run (``toml``, ``bash``,
``text`` ... are shown only). A traceback points at the Markdown file and line.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\b\s*:?\s*(?P<reason>.*?)\s*-->\s*$")
SLOW = re.compile(r"<!--\s*docs-test:\s*slow\s*-->")
ANY_MARKER = re.compile(r"<!--\s*docs-test:")


@attrs.frozen
class Snippet:
    """One fenced ```python block: its code, the Markdown line it starts on, skip reason if marked."""

    page: str
    line: int  # 1-based line of the first code line
    code: str
    skip: str | None


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    found = sorted((ROOT / "docs").rglob("*.md"))
    readme = ROOT / "README.md"
    return ([readme] if readme.exists() else []) + found


def snippets(path: Path, root: Path = ROOT) -> list[Snippet]:
    """The ```python blocks of a Markdown file, with their skip markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(root).as_posix()
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if info.split(" ")[0].split("{")[0].lower() in ("python", "py"):
            out.append(Snippet(page, i + 2, "\n".join(body) + "\n", _skip_reason(lines, i, page)))
        i = j + 1
    return out


def _skip_reason(lines: list[str], fence_line: int, page: str) -> str | None:
    k = fence_line - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0 or not ANY_MARKER.search(lines[k]):
        return None
    m = SKIP.match(lines[k])
    if m is None:
        raise ValueError(
            f"{page}:{k + 1}: unknown docs-test marker {lines[k].strip()!r}; "
            "use <!-- docs-test: skip: REASON --> before a fence"
        )
    if not m["reason"]:
        raise ValueError(f"{page}:{k + 1}: a docs-test skip marker needs a reason: <!-- docs-test: skip: REASON -->")
    return m["reason"]


def _page_params() -> list:
    params = []
    for path in pages():
        marks = [pytest.mark.slow] if SLOW.search(path.read_text(encoding="utf-8")) else []
        params.append(pytest.param(path, id=path.relative_to(ROOT).as_posix(), marks=marks))
    return params


@pytest.mark.parametrize("path", _page_params())
def test_page_snippets_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    for snip in snippets(path):
        # pad with newlines so a traceback names the Markdown file and its real line numbers
        code = compile("\n" * (snip.line - 1) + snip.code, snip.page, "exec")
        if snip.skip is None:
            exec(code, namespace)


# ---- the snippet runner itself ------------------------------------------------------------


def test_runner_finds_blocks_markers_and_line_numbers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n```python\na = 1\n```\n\n```toml\nx = 1\n```\n\n"
        '<!-- docs-test: skip: needs a server -->\n\n```python title="x"\nserver()\n```\n\n'
        "* item\n\n    ```py\n    b = a + 1\n    ```\n",
        encoding="utf-8",
    )
    found = snippets_of(page)
    assert [(s.line, s.code, s.skip) for s in found] == [
        (4, "a = 1\n", None),
        (14, "server()\n", "needs a server"),
        (20, "b = a + 1\n", None),
    ]


def test_runner_rejects_skip_without_reason_and_unknown_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```python\nx\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs a reason"):
        snippets_of(page)
    page.write_text("<!-- docs-test: skipp: typo -->\n```python\nx\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown docs-test marker"):
        snippets_of(page)


def test_skips_are_rare_and_explained() -> None:
    every = [s for p in pages() for s in snippets(p)]
    skipped = [s for s in every if s.skip]
    assert every, "no python snippets found"
    for s in skipped:
        assert len(s.skip) >= 10, f"{s.page}:{s.line}: say why the snippet cannot run"
    # distilabel 0.x 'before' snippets aside, most snippets must run
    own = [s for s in skipped if "distilabel" not in s.skip.lower()]
    assert len(own) <= len(every) // 3, [f"{s.page}:{s.line}" for s in own]


def snippets_of(path: Path) -> list[Snippet]:
    """``snippets`` for a file outside the repository (tests of the runner)."""
    return snippets(path, root=path.parent)


# ---- doctests of the package (the equivalent of pytest --doctest-modules fnlabel) ----------


def _modules() -> list[str]:
    import fnlabel

    names = ["fnlabel"]
    for info in pkgutil.walk_packages(fnlabel.__path__, "fnlabel."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # importing it would run the CLI
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_doctests(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in finder.find(module, name):  # only objects defined in this module, not re-exports
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


# ---- the site ------------------------------------------------------------------------------


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "index.html").exists()


# ---- benchmark figures -----------------------------------------------------------------------


def _plot_module():
    spec = importlib.util.spec_from_file_location("benchmarks_plot", ROOT / "benchmarks" / "plot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tables_match_results(capsys: pytest.CaptureFixture[str]) -> None:
    plot = _plot_module()
    ratios, _skipped = plot.load()
    assert ratios, "no benchmarks/results/*.json has a 'ratios' block"
    assert plot.main(["--check"]) == 0, capsys.readouterr().err


def test_benchmark_ratio_shape(tmp_path: Path) -> None:
    plot = _plot_module()
    (tmp_path / "a.json").write_text('{"ratios": {"x / y": {"value": 0.7, "target": 0.8, "better": "lower"}, "z": 2}}')
    (tmp_path / "b.json").write_text('{"old": 1}')
    ratios, skipped = plot.load(tmp_path)
    assert [(r.name, r.value, r.met) for r in ratios] == [("x / y", 0.7, True), ("z", 2.0, None)]
    assert skipped == ["b.json"]
    assert "| a | x / y | 0.70 | ≤ 0.8 | met |" in plot.table(ratios)
    (tmp_path / "c.json").write_text('{"ratios": {"bad": {"value": 1, "better": "more"}}}')
    with pytest.raises(ValueError, match="c.json: ratios.bad.better"):
        plot.load(tmp_path)
