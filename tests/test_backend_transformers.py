"""The transformers backend on the real embedded model (SmolLM2-135M GGUF, dequantized), no mocks."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
import transformers as transformers_library  # noqa: F401 - the library must be installed, never skipped

import fnlabel
from fnlabel import BackendError, ConfigError, Generation, GenerationParams, text_of
from fnlabel.backends import config_class
from fnlabel.backends.transformers import Transformers, TransformersConfig, transformers
from tests.model_helpers import assert_logprobs
from tests.structured_helpers import SCHEMA, check_all_valid

pytestmark = pytest.mark.slow

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]
# different token lengths, so batches need padding
PROMPTS = ["Hi", "The capital of France is", "One, two, three, four, five, six, seven,", CHAT]
SAMPLE = GenerationParams(max_new_tokens=8, temperature=1.0, seed=7)
GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)


@pytest.fixture(scope="session")
def backend() -> Transformers:
    return transformers(model="smollm2", batch_size=4, device="cpu")


def texts(out: list) -> list[list[str | None]]:
    """The texts of a backend's output (None for a failure)."""
    return [[text_of(g) for g in row] for row in out]


def n_tokens(backend: Transformers, text: str) -> int:
    return len(backend.loaded().tokenizer(text, add_special_tokens=False)["input_ids"])


def test_config_is_a_registered_validated_record():
    assert config_class("transformers") is TransformersConfig
    cfg = TransformersConfig(batch_size=4)
    assert hash(cfg) == hash(TransformersConfig(batch_size=4))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    with pytest.raises(ConfigError, match="batch_size"):
        TransformersConfig(batch_size=0)
    with pytest.raises(ConfigError, match="dtype"):
        TransformersConfig(dtype="float64")
    with pytest.raises(ConfigError, match="device"):
        TransformersConfig(device="gpu")
    with pytest.raises(ConfigError, match="gguf_file"):
        TransformersConfig(model="smollm2", gguf_file="x.gguf").source()
    with pytest.raises(ConfigError, match="could not load"):
        TransformersConfig(model="/nonexistent/folder").build()


def test_backend_reports_real_model_and_natural_format(backend):
    assert backend.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert backend.prompt_format == "openai"
    assert transformers(model="smollm2", batch_size=4, device="cpu").loaded() is backend.loaded()


def test_shapes(backend):
    out = backend([*PROMPTS, "Red, green,"], SAMPLE.replace(num_generations=2))  # 5 prompts: 2 batches
    assert [len(gens) for gens in out] == [2] * 5
    assert all(isinstance(g, Generation) for gens in out for g in gens)
    assert backend([], SAMPLE) == []


def test_batched_greedy_equals_unbatched_greedy(backend):
    batched = texts(backend(PROMPTS, GREEDY))
    assert batched == [texts(backend([p], GREEDY))[0] for p in PROMPTS]
    assert len({g for gens in batched for g in gens}) == len(PROMPTS)


def test_seed_reproduces_and_generations_differ(backend):
    params = SAMPLE.replace(num_generations=3)
    first = texts(backend(PROMPTS[:2], params))
    assert texts(backend(PROMPTS[:2], params)) == first
    for gens in first:
        assert len(set(gens)) >= 2, gens
    assert texts(backend(PROMPTS[:2], params.replace(seed=8))) != first


def test_seeded_sequences_do_not_depend_on_torch_global_rng(backend):

    params = SAMPLE.replace(num_generations=2)
    torch.manual_seed(1)
    first = texts(backend(["Once upon a time"], params))
    torch.manual_seed(2)
    assert texts(backend(["Once upon a time"], params)) == first


def test_unseeded_runs_differ(backend):
    params = SAMPLE.replace(seed=None, max_new_tokens=12)
    assert texts(backend(["Once upon a time"], params)) != texts(backend(["Once upon a time"], params))


def test_max_new_tokens_bounds_length(backend):
    for limit in (1, 6):
        out = backend(["Once upon a time"], GREEDY.replace(max_new_tokens=limit))[0][0].text
        assert 0 < n_tokens(backend, out) <= limit


SAY_HI = [{"role": "user", "content": "Say hi"}]


def test_a_generation_ended_by_eos_reports_stop_and_its_tokens(backend):
    tok = backend.loaded().tokenizer
    [[gen]] = backend([SAY_HI], GenerationParams(max_new_tokens=64, temperature=0.0))
    assert gen.finish_reason == "stop" and gen.text and gen.logprobs is None
    assert gen.output_tokens == n_tokens(backend, gen.text) < 64, "the tokens it wrote, not the EOS that ended it"
    rendered = tok.apply_chat_template(SAY_HI, add_generation_prompt=True, tokenize=False)
    assert gen.input_tokens == n_tokens(backend, rendered) > n_tokens(backend, "Say hi") + 10
    # in a batch (left padding), each row counts its own prompt's tokens, not the pads
    short, long = "Hi", "One, two, three, four, five, six, seven, eight, nine, ten, " * 2
    out = backend([SAY_HI, short, long], GREEDY)
    assert [g.input_tokens for [g] in out] == [gen.input_tokens, n_tokens(backend, short), n_tokens(backend, long)]
    assert n_tokens(backend, short) < gen.input_tokens < n_tokens(backend, long)


def test_a_generation_cut_by_max_new_tokens_reports_length(backend):
    out = backend([SAY_HI, "The capital of France is"], GenerationParams(max_new_tokens=5, temperature=0.0))
    assert [(g.finish_reason, g.output_tokens) for [g] in out] == [("length", 5)] * 2


def test_logprobs_of_each_output_token(backend):
    params = GREEDY.replace(logprobs=2)
    prompts = [SAY_HI, "The capital of France is"]  # one batch, different lengths: left padding
    batched = [g for [g] in backend(prompts, params)]
    for gen in batched:
        assert_logprobs(gen, 2)
    # each row's logprobs are its own: alone, a prompt gets the same ones
    for prompt, gen in zip(prompts, batched):
        [[alone]] = backend([prompt], params)
        assert alone.text == gen.text
        assert [e["logprob"] for e in alone.logprobs] == pytest.approx([e["logprob"] for e in gen.logprobs], abs=1e-3)
    assert texts(backend(prompts, GREEDY)) == [[g.text] for g in batched], "logprobs do not change the text"
    # sampled: the chosen token is ranked among the top ones (or below them), never above
    [gens] = backend(["Once upon a time"], SAMPLE.replace(logprobs=3, num_generations=2))
    for gen in gens:
        assert len(gen.logprobs) == gen.output_tokens
        assert all(e["logprob"] <= e["top_logprobs"][0]["logprob"] + 1e-6 for e in gen.logprobs)


def test_stop_strings_stop(backend):
    prompt = "One, two, three, four, five, six, seven,"
    full = backend([prompt], GREEDY.replace(max_new_tokens=10))[0][0].text
    assert " nine" in full, full
    cut = backend([prompt, "Hi"], GREEDY.replace(max_new_tokens=10, stop=(" nine",)))[0][0].text
    assert cut == full[: full.index(" nine")]


def test_chat_messages_use_the_chat_template(backend):
    tok = backend.loaded().tokenizer
    rendered = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<|im_start|>system")
    chat_out = backend([CHAT], GREEDY)[0][0]
    # the string prompt tokenizes the same as the rendered template (SmolLM2 adds no BOS)
    assert chat_out == backend([rendered], GREEDY)[0][0]
    assert chat_out.input_tokens == n_tokens(backend, rendered)
    assert chat_out.text != backend(["Name a fruit."], GREEDY)[0][0].text
    plain = transformers(model="smollm2", batch_size=4, device="cpu", use_chat_template=False)
    assert plain.prompt_format == "default"
    with pytest.raises(BackendError, match="use_chat_template=False"):
        plain([CHAT], GREEDY)


def test_general_params_reach_the_sampler(backend):
    repetitive = "nine nine nine nine nine nine nine nine"
    plain = backend([repetitive], GREEDY)[0][0].text
    assert backend([repetitive], GREEDY.replace(presence_penalty=2.0, frequency_penalty=2.0))[0][0].text != plain
    # top_k=1 leaves one candidate: sampling at a high temperature is greedy
    top1 = texts(backend(["The sky is"], SAMPLE.replace(temperature=1.5, top_k=1, num_generations=2)))[0]
    assert top1 == texts(backend(["The sky is"], GREEDY.replace(num_generations=2)))[0]


def test_composed_with_text_generation(backend):
    gen = fnlabel.llm(fnlabel.tasks.text_generation(system_prompt="Be brief."), backend, GREEDY)
    outputs = gen([{"input": "Name a fruit."}, {"input": "Name a colour."}], num_generations=2)
    assert [len(row) for row in outputs] == [2, 2]
    first = outputs[0][0]
    assert first["model_name"] == "SmolLM2-135M-Instruct.Q4_1"
    assert first["prompt_used"] == CHAT
    assert first["raw_output"] == backend([CHAT], GREEDY)[0][0].text
    assert first["parsed_output"] == {"generations": first["raw_output"]}


def test_seeded_sampler_draws_from_the_softmax():

    from fnlabel.backends.hf_processors import SeededSampler

    scores = torch.tensor([[0.0, 1.0, -float("inf"), 2.0]])
    counts = torch.zeros(4)
    sampler = SeededSampler([5])
    for _ in range(4000):
        one_hot = sampler(None, scores)
        assert torch.isfinite(one_hot).sum() == 1
        counts[one_hot.argmax()] += 1
    assert counts[2] == 0  # never a zero-probability token
    assert torch.allclose(counts / 4000, torch.softmax(scores, -1)[0], atol=0.03)


def test_a_string_that_starts_with_bos_gets_no_second_one(tmp_path):
    # A tokenizer that adds BOS itself (Llama-2, Mistral) must not add one before a prompt that already
    # starts with it (the llama2 format's "<s>", a rendered chat template): here the embedded model's
    # folder with a tokenizer.json that adds BOS as Llama's does (its BOS is "<|im_start|>", which every
    # chatml prompt starts with)
    from fnlabel.backends.models import embedded_hf_folder
    from tests.model_helpers import bos_adding_hf_folder

    folder = bos_adding_hf_folder(embedded_hf_folder(), tmp_path)
    gen = transformers(model=str(folder), device="cpu", dtype="float32")
    tok = gen.loaded().tokenizer
    assert tok("Hi")["input_ids"][0] == tok.bos_token_id, "this tokenizer adds BOS"
    text = fnlabel.format_prompt(fnlabel.Prompt("Be brief.", "Name a fruit."), "chatml")
    assert gen._tokenize(gen.loaded(), text, 0)[:2] != [tok.bos_token_id] * 2
    assert gen._tokenize(gen.loaded(), "Hi", 0)[0] == tok.bos_token_id, "other strings still get BOS"
    # the chatml string is what the chat template renders: both give the same greedy text
    assert texts(gen([text], GREEDY)) == texts(gen([CHAT], GREEDY))
    gen.close()


# --- structured output ---------------------------------------------------------------------------


def test_a_json_schema_constrains_every_generation(backend):
    check_all_valid(backend, "transformers")


def test_choices_and_a_regex_constrain_the_text(backend):
    picked = backend(["Is the sky blue?", CHAT], SAMPLE.replace(structured_output={"choice": ["yes", "no"]}))
    assert {g.text for row in picked for g in row} <= {"yes", "no"}
    phone = backend(
        ["My phone number is"], SAMPLE.replace(max_new_tokens=16, structured_output={"regex": r"\d{3}-\d{4}"})
    )
    assert re.fullmatch(r"\d{3}-\d{4}", phone[0][0].text)
    # the seeds still decide: a constrained seeded run reproduces
    params = SAMPLE.replace(max_new_tokens=24, num_generations=2, structured_output={"json_schema": SCHEMA})
    assert backend([CHAT], params) == backend([CHAT], params)
