"""Inputs by extension, and the crash-safe JSONL log."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fnlabel.errors import InputError
from fnlabel.run.inputs import read_input
from fnlabel.run.journal import JsonlLog, to_json_line
from fnlabel.run.parquet import write_parquet

ROWS = [{"input": "a", "n": 1}, {"input": "b, with comma", "n": 2}, {"input": "c\nmultiline", "n": 3}]


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"input": "a"}\n\n{"input": "b"}\n   \n{"input": "c"}')  # no trailing newline either
    data = read_input(p)
    assert data.rows == [{"input": "a"}, {"input": "b"}, {"input": "c"}]
    assert data.where == ["line 1", "line 3", "line 5"]
    assert data.locate(1) == f"{p} line 3"
    assert read_input(p, limit=2).rows == [{"input": "a"}, {"input": "b"}]


def test_json_list(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps(ROWS))
    data = read_input(p)
    assert data.rows == ROWS and data.where == ["item 0", "item 1", "item 2"]


def test_csv_values_are_strings_and_lines_count_quoted_newlines(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["input", "n"])
        w.writeheader()
        w.writerows(ROWS)
    data = read_input(p)
    assert data.rows == [{k: str(v) for k, v in r.items()} for r in ROWS]
    assert data.where == ["line 2", "line 3", "line 4"]  # row 3 starts on line 4 and spans two lines


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    data = read_input(p, limit=2)
    assert data.rows == ROWS[:2] and data.where == ["row 0", "row 1"]


def test_hf_without_the_extra_says_how_to_install() -> None:
    import subprocess
    import sys

    # a fresh interpreter in which `import datasets` fails, as it does without the extra
    code = (
        "import sys; sys.modules['datasets'] = None\n"
        "from fnlabel.run.inputs import read_input\n"
        "try:\n    read_input('hf:org/name:test')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent
    ).stdout
    assert (
        out.strip()
        == "InputError hf:org/name:test: Hugging Face datasets need the extra: pip install 'fnlabel[datasets]'"
    )


def test_hf_dataset_from_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"input": "a"}\n{"input": "b"}\n{"input": "c"}\n')
    (folder / "test.jsonl").write_text('{"input": "t"}\n')
    data = read_input(f"hf:{folder}", limit=2)
    assert data.rows == [{"input": "a"}, {"input": "b"}] and data.where == ["row 0", "row 1"]
    assert read_input(f"hf:{folder}:test").rows == [{"input": "t"}]
    with pytest.raises(InputError, match=r"cannot load dataset .* split 'nope'"):
        read_input(f"hf:{folder}:nope")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "x.jsonl",
            '{"input": "a"}\n{"input": \n',
            r"x.jsonl line 2: invalid JSON .*each line must be one JSON object",
        ),
        ("x.jsonl", '{"input": "a"}\n["a list"]\n', r"x.jsonl line 2: expected a JSON object"),
        ("x.json", '{"input": "a"}', r"x.json: expected a JSON list of objects"),
        ("x.json", '[{"input": "a"}, 3]', r"x.json item 1: expected a JSON object"),
        ("x.json", "[{", r"x.json: invalid JSON at line 1"),
        ("x.csv", "input\na,b\n", r"x.csv line 2: more fields than the header"),
        ("x.txt", "hello", r"x.txt: unknown input format '.txt'; supported: .jsonl, .ndjson, .json, .csv, .parquet"),
    ],
)
def test_bad_inputs_name_the_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        read_input(tmp_path / name)


def test_missing_input_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.jsonl: no such input file \(relative paths are read from"):
        read_input(tmp_path / "nope.jsonl")


def test_log_drops_a_half_written_line_and_appends_whole_lines(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "half')
    log = JsonlLog(p)
    assert log.count == 2
    assert p.read_text() == '{"a": 1}\n{"a": 2}\n'
    log.append([to_json_line({"a": 3}), to_json_line({"a": 4})])
    assert log.count == 4 and [r["a"] for r in log.records()] == [1, 2, 3, 4]
    log.rewrite(line.replace("4", "40") for line in list(log.lines()))
    assert [r["a"] for r in JsonlLog(p).records()] == [1, 2, 3, 40]
    assert not (tmp_path / "out.jsonl.tmp").exists()


def test_log_counts_lines_across_read_chunks(tmp_path: Path) -> None:
    p = tmp_path / "big.jsonl"
    line = to_json_line({"x": "y" * 1000})
    p.write_text(line * 3000 + line[:500])  # > 1 MiB, so the count spans chunks
    assert JsonlLog(p).count == 3000
    assert p.stat().st_size == len(line) * 3000


def test_parquet_output_keeps_nested_outputs(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    src = tmp_path / "o.jsonl"
    rows = [{"input": "a", "outputs": [{"model_name": "m", "raw_output": "x", "parsed_output": {"g": "x"}}]}]
    src.write_text("".join(to_json_line(r) for r in rows))
    write_parquet(src, tmp_path / "o.parquet")
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == rows


def test_parquet_output_survives_columns_of_mixed_types(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    src = tmp_path / "o.jsonl"
    outputs = [{"model_name": "m", "raw_output": "x", "parsed_output": {"g": "x"}}]
    rows = [
        {"input": "a", "x": 1, "big": 2**70, "outputs": outputs},
        {"input": "b", "x": "two", "big": 1, "outputs": outputs},
        {"input": "c", "x": [3], "big": None, "outputs": outputs},
    ]
    src.write_text("".join(to_json_line(r) for r in rows))
    write_parquet(src, tmp_path / "o.parquet")
    got = pq.read_table(tmp_path / "o.parquet").to_pylist()
    # only the columns Arrow cannot hold in one type become JSON text; the others keep their types
    assert [r["outputs"] for r in got] == [outputs] * 3
    assert [r["input"] for r in got] == ["a", "b", "c"]
    assert [r["x"] for r in got] == ["1", '"two"', "[3]"]
    assert [r["big"] for r in got] == [str(2**70), "1", None]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("x.csv", "input,n\nhello,1\n"),
        ("x.jsonl", '{"input": "hello", "n": "1"}\n'),
        ("x.json", '[{"input": "hello", "n": "1"}]'),
    ],
)
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_key(tmp_path: Path, name: str, text: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # as Excel's "CSV UTF-8" and some editors write
    assert read_input(p).rows == [{"input": "hello", "n": "1"}]


def test_csv_rows_after_blank_lines_are_located_on_their_own_line(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text('\ninput,n\na,1\n\n\nb,2\n"multi\nline",3\n\nc\n')
    data = read_input(p)
    assert data.rows == [
        {"input": "a", "n": "1"},
        {"input": "b", "n": "2"},
        {"input": "multi\nline", "n": "3"},
        {"input": "c", "n": None},
    ]
    assert data.where == ["line 3", "line 6", "line 7", "line 10"]
    p.write_text("input\na\n\nb,extra\n")
    with pytest.raises(InputError, match=r"x.csv line 4: more fields than the header"):
        read_input(p)


def test_a_lone_surrogate_is_written_as_an_escape_that_reads_back_the_same(tmp_path: Path) -> None:
    row = {"input": "cut \ud83d emoji", "ok": "日本語 😀"}
    line = to_json_line(row)
    assert "\\ud83d" in line and line.encode("utf-8")  # an escape, so the line is valid UTF-8
    log = JsonlLog(tmp_path / "o.jsonl")
    log.append([line, to_json_line({"input": "plain é"})])
    assert [json.loads(x) for x in log.lines()] == [row, {"input": "plain é"}]
    assert "é" in (tmp_path / "o.jsonl").read_text(encoding="utf-8")  # other lines stay readable UTF-8

    import pyarrow.parquet as pq

    write_parquet(tmp_path / "o.jsonl", tmp_path / "o.parquet")  # Parquet text must be UTF-8: JSON text there
    got = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert json.loads(got[0]["input"]) == row["input"] and got[0]["ok"] == row["ok"]


def test_csv_fields_longer_than_the_csv_module_default_are_read(tmp_path: Path) -> None:
    import csv as csv_module

    long = "word " * 40_000  # 200,000 characters: a document, more than csv's default 131,072
    p = tmp_path / "x.csv"
    with p.open("w", newline="", encoding="utf-8") as fh:
        csv_module.writer(fh).writerows([["input", "n"], [long, 1], ["short", 2]])
    limit = csv_module.field_size_limit()
    assert read_input(p).rows == [{"input": long, "n": "1"}, {"input": "short", "n": "2"}]
    assert csv_module.field_size_limit() == limit  # the process-wide setting is left as it was


@pytest.mark.parametrize("name", ["in.jsonl", "in.csv", "in.json"])
def test_bytes_that_are_not_utf8_name_their_line_not_a_decoder_offset(tmp_path: Path, name: str) -> None:
    first = {"in.jsonl": b'{"input": "ok"}\n', "in.csv": b"input\nok\n", "in.json": b'[{"input": "ok"},\n'}[name]
    bad = {"in.jsonl": b'{"input": "caf\xe9"}\n', "in.csv": b"caf\xe9\n", "in.json": b'{"input": "caf\xe9"}]\n'}[name]
    (tmp_path / name).write_bytes(first + bad)
    with pytest.raises(InputError, match=rf"{name} line \d+: not UTF-8 text \(byte b'\\xe9' at column \d+\)") as info:
        read_input(tmp_path / name)
    assert "position" not in str(info.value)  # (what the decoder says: an offset in the whole file)


def test_parquet_output_is_written_chunk_by_chunk_with_one_schema(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    # types that only the whole file settles: a column null for a whole chunk, ints then floats,
    # a struct whose keys appear late, and a column mixing numbers and text (written as JSON text)
    rows = [
        {"id": i, "maybe": None if i < 5 else "x", "score": i if i < 5 else i + 0.5,
         "parsed": {"a": i} if i < 5 else {"a": i, "b": "later"}, "mixed": i if i % 2 else "text"}
        for i in range(10)
    ]  # fmt: skip
    src = tmp_path / "o.jsonl"
    src.write_text("".join(to_json_line(r) for r in rows), encoding="utf-8")
    write_parquet(src, tmp_path / "o.parquet", chunk_rows=3)
    back = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [r["id"] for r in back] == list(range(10))
    assert [r["maybe"] for r in back] == [None] * 5 + ["x"] * 5
    assert [r["score"] for r in back] == [float(r["score"]) for r in rows]
    assert back[7]["parsed"] == {"a": 7, "b": "later"} and back[1]["parsed"] == {"a": 1, "b": None}
    assert [r["mixed"] for r in back] == [json.dumps(r["mixed"]) for r in rows]
