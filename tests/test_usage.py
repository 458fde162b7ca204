"""What a run reports of its generations: tokens, generations cut at max_new_tokens, cost, --max-cost."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import fnlabel
from fnlabel.run import resolve_options, run_recipe
from tests.recipe_helpers import echo_recipe, questions, read_jsonl, write_jsonl
from tests.recipe_helpers import fnlabel as fnlabel_cli

PRICING = "[pricing]\ninput = 0.15\noutput = 0.60\n"


def sums(rows: list[dict], key: str = "outputs") -> tuple[int, int, int]:
    """Input tokens, output tokens and cut generations, summed over the output's metadata."""
    metas = [o["metadata"] for row in rows for o in row[key]]
    return (
        sum(m["input_tokens"] for m in metas),
        sum(m["output_tokens"] for m in metas),
        sum(m["finish_reason"] == "length" for m in metas),
    )


def test_the_summary_totals_are_the_sums_over_the_outputs_metadata(tmp_path: Path) -> None:
    # echo counts words as tokens; max_new_tokens = 2 cuts the rows of more than two words
    rows = [{"id": 0, "input": "short"}, *questions(5, start=1)]
    write_jsonl(tmp_path / "in.jsonl", rows)
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, extra=PRICING, run="num_generations = 3\nbatch_size = 2"))
    recipe = attrs.evolve(recipe, params=recipe.params.replace(max_new_tokens=2))
    summary = run_recipe(recipe, resolve_options(recipe))
    out = read_jsonl(tmp_path / "out.jsonl")
    inputs, outputs, cut = sums(out)
    assert (summary.usage.input_tokens, summary.usage.output_tokens, summary.usage.truncated) == (inputs, outputs, cut)
    assert cut == 5 * 3 and outputs == 3 * (1 + 2 * 5), "the one-word row is whole, the others cut at 2"
    assert summary.usage.cost == pytest.approx((inputs * 0.15 + outputs * 0.60) / 1e6)


def test_metadata_false_writes_the_four_keys_and_still_counts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(4))
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, extra=PRICING, run="metadata = false"))
    summary = run_recipe(recipe, resolve_options(recipe))
    out = read_jsonl(tmp_path / "out.jsonl")
    assert all(
        set(o) == {"model_name", "prompt_used", "raw_output", "parsed_output"} for r in out for o in r["outputs"]
    )
    assert summary.usage.output_tokens == 4 * 3 and summary.usage.input_tokens == 4 * 3
    assert summary.usage.cost is not None and summary.usage.cost > 0


def test_two_stages_are_priced_each_at_its_own_prices(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(3))
    label = (
        '[label]\n[label.task]\nkind = "text-generation"\nsystem_prompt = ""\n'
        '[label.backend]\nkind = "echo"\n[label.pricing]\noutput = 10.0\n'
    )
    path = echo_recipe(tmp_path, extra=PRICING)
    path.write_text(path.read_text() + label)
    recipe = fnlabel.load_recipe(path)
    summary = run_recipe(recipe, resolve_options(recipe))
    out = read_jsonl(tmp_path / "out.jsonl")
    g_in, g_out, g_cut = sums(out, "generator_outputs")
    l_in, l_out, l_cut = sums(out, "outputs")
    assert summary.usage.input_tokens == g_in + l_in and summary.usage.output_tokens == g_out + l_out
    assert summary.usage.truncated == g_cut + l_cut
    assert summary.usage.cost == pytest.approx((g_in * 0.15 + g_out * 0.60 + l_out * 10.0) / 1e6)


def test_the_cli_summary_shows_tokens_cut_generations_and_cost(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(4))
    recipe = echo_recipe(tmp_path, extra=PRICING, run="num_generations = 2")
    text = recipe.read_text().replace("max_new_tokens = 16", "max_new_tokens = 2")
    recipe.write_text(text)
    res = fnlabel_cli("run", str(recipe))
    assert res.returncode == 0, res.stderr
    inputs, outputs, cut = sums(read_jsonl(tmp_path / "out.jsonl"))
    assert f"{inputs} input + {outputs} output tokens" in res.stderr
    assert f"{cut} generations cut at max_new_tokens" in res.stderr and "raise max_new_tokens" in res.stderr
    cost = (inputs * 0.15 + outputs * 0.60) / 1e6
    assert f"cost ${cost:.6f}" in res.stderr


def test_max_cost_stops_the_run_keeping_what_is_done_and_a_rerun_goes_on(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(10))
    recipe = echo_recipe(tmp_path, extra="[pricing]\ninput = 100000.0\n", run="batch_size = 2")
    # each row's prompt is 3 words: a batch costs 2 * 3 * 0.1 = $0.6, so the second batch crosses $1
    res = fnlabel_cli("run", str(recipe), "--max-cost", "1")
    assert res.returncode == 3, res.stderr
    assert "more than --max-cost 1" in res.stderr and "$1.20" in res.stderr
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 4, "the batches done are kept"
    again = fnlabel_cli("run", str(recipe))
    assert again.returncode == 0, again.stderr
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(10))


def test_max_cost_without_prices_is_refused_before_work(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(2))
    recipe = echo_recipe(tmp_path)
    res = fnlabel_cli("run", str(recipe), "--max-cost", "5")
    assert res.returncode == 2
    assert "--max-cost 5.0 needs prices: add a [pricing] table" in res.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_pricing_is_checked_when_the_recipe_loads(tmp_path: Path) -> None:
    bad = echo_recipe(tmp_path, extra="[pricing]\ninput = -1\n")
    with pytest.raises(fnlabel.RecipeError, match="Pricing.input must be a number >= 0"):
        fnlabel.load_recipe(bad)
    typo = echo_recipe(tmp_path, extra="[pricing]\nouput = 1\n", name="t.toml")
    with pytest.raises(fnlabel.RecipeError, match="unknown key 'ouput' \\(did you mean 'output'\\?\\)"):
        fnlabel.load_recipe(typo)
