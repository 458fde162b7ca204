"""The llama.cpp backend on the real embedded model (SmolLM2-135M-Instruct GGUF), no mocks."""

from __future__ import annotations

import pickle
import re

import llama_cpp as llama_cpp_library  # noqa: F401 - the library must be installed, never skipped
import pytest

import fnlabel
from fnlabel import ConfigError, Generation, GenerationFailure, GenerationParams, text_of
from fnlabel.backends import config_class
from fnlabel.backends.llama_cpp import LlamaCpp, LlamaCppConfig, _prompt_tokens, llama_cpp, sampling_kwargs
from fnlabel.seeds import generation_seed
from tests.model_helpers import assert_logprobs
from tests.structured_helpers import check_all_valid

pytestmark = pytest.mark.slow

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}]
SAMPLE = GenerationParams(max_new_tokens=10, temperature=1.0, seed=123)
GREEDY = GenerationParams(max_new_tokens=10, temperature=0.0)


@pytest.fixture(scope="session")
def backend() -> LlamaCpp:
    return llama_cpp(model="smollm2", n_ctx=512)


def texts(out: list) -> list[list[str | None]]:
    """The texts of a backend's output (None for a failure)."""
    return [[text_of(g) for g in row] for row in out]


def n_tokens(backend: LlamaCpp, text: str) -> int:
    return len(backend.llama().tokenize(text.encode(), add_bos=False, special=True))


def test_config_is_a_registered_validated_record():
    assert config_class("llama-cpp") is LlamaCppConfig
    cfg = LlamaCppConfig(n_ctx=512)
    assert hash(cfg) == hash(LlamaCppConfig(n_ctx=512))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    with pytest.raises(ConfigError, match="n_ctx"):
        LlamaCppConfig(n_ctx=0)
    with pytest.raises(ConfigError, match="n_threads"):
        LlamaCppConfig(n_threads=True)
    with pytest.raises(ConfigError, match="no such GGUF"):
        LlamaCppConfig(model="/nonexistent/model.gguf").build()


def test_backend_reports_real_model_and_natural_format(backend):
    assert backend.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert backend.prompt_format == "openai"
    # loaded once per config: a second build shares the same Llama object
    assert llama_cpp(model="smollm2", n_ctx=512).llama() is backend.llama()


def test_shapes_for_string_and_chat_prompts(backend):
    out = backend(["The sky is", CHAT, "1, 2, 3,"], SAMPLE.replace(num_generations=2))
    assert [len(gens) for gens in out] == [2, 2, 2]
    assert all(isinstance(g, Generation) for gens in out for g in gens)
    assert backend([], SAMPLE) == []


def test_seed_reproduces_and_generations_differ(backend):
    params = SAMPLE.replace(num_generations=3)
    first = texts(backend(["Once upon a time", CHAT], params))
    assert texts(backend(["Once upon a time", CHAT], params)) == first
    for gens in first:
        assert len(set(gens)) >= 2, gens
    # asking for more generations keeps the earlier ones
    assert texts(backend(["Once upon a time"], params.replace(num_generations=4)))[0][:3] == first[0]
    assert texts(backend(["Once upon a time"], params.replace(seed=124)))[0] != first[0]


def test_generation_i_uses_the_derived_seed(backend):
    # generation 1 of seed s is what llama.cpp gives for seed generation_seed(s, 1)
    got = backend(["Once upon a time"], SAMPLE.replace(num_generations=2))[0][1].text
    raw = backend.llama().create_completion(
        "Once upon a time", seed=generation_seed(123, 1), **sampling_kwargs(backend.config, SAMPLE)
    )
    assert got == raw["choices"][0]["text"]


def test_unseeded_runs_differ(backend):
    params = SAMPLE.replace(seed=None, max_new_tokens=16)
    assert texts(backend(["Once upon a time"], params)) != texts(backend(["Once upon a time"], params))


def test_max_new_tokens_bounds_length(backend):
    for limit in (1, 7):
        out = backend(["Once upon a time"], GREEDY.replace(max_new_tokens=limit))[0][0].text
        assert 0 < n_tokens(backend, out) <= limit


SAY_HI = [{"role": "user", "content": "Say hi"}]


def template_tokens(backend: LlamaCpp, messages: list[dict[str, str]]) -> int:
    """The tokens of ``messages`` as the GGUF's own chat template renders them (its default system turn included)."""
    import jinja2

    template = backend.llama().metadata["tokenizer.chat_template"]
    return n_tokens(backend, jinja2.Template(template).render(messages=messages, add_generation_prompt=True))


def test_a_generation_ended_by_eos_reports_stop_and_its_tokens(backend):
    [[gen]] = backend([SAY_HI], GenerationParams(max_new_tokens=64, temperature=0.0))
    assert gen.finish_reason == "stop" and gen.text and gen.logprobs is None
    assert gen.output_tokens == n_tokens(backend, gen.text) < 64, "the tokens it wrote, not the EOS that ended it"
    assert gen.input_tokens == template_tokens(backend, SAY_HI) > n_tokens(backend, "Say hi") + 10
    [[plain]] = backend(["The capital of France is"], GREEDY)
    assert plain.input_tokens == n_tokens(backend, "The capital of France is")


def test_a_generation_cut_by_max_new_tokens_reports_length(backend):
    for prompt in (SAY_HI, "The capital of France is"):
        [[gen]] = backend([prompt], GenerationParams(max_new_tokens=5, temperature=0.0))
        assert (gen.finish_reason, gen.output_tokens) == ("length", 5), gen


def test_logprobs_of_each_output_token(backend):
    params = GREEDY.replace(max_new_tokens=8, logprobs=2)
    [[chat]], [[plain]] = backend([SAY_HI], params), backend(["The capital of France is"], params)
    for gen in (chat, plain):
        assert_logprobs(gen, 2)
    # logprobs load a second copy of the model (logits_all=True): the greedy text is the same
    assert chat.text == backend([SAY_HI], GREEDY.replace(max_new_tokens=8))[0][0].text
    [[one]] = backend([SAY_HI], params.replace(logprobs=1))
    assert [len(e["top_logprobs"]) for e in one.logprobs] == [1] * 8


def test_stop_strings_stop(backend):
    full = backend(["Count: 1, 2, 3,"], GREEDY.replace(max_new_tokens=16))[0][0].text
    assert " 5," in full, full
    cut = backend(["Count: 1, 2, 3,"], GREEDY.replace(max_new_tokens=16, stop=(" 5,",)))[0][0].text
    assert cut == full[: full.index(" 5,")]


def test_chat_messages_use_the_chat_template_and_strings_do_not(backend):
    raw = backend.llama()
    kw = sampling_kwargs(backend.config, GREEDY)
    chat_out, text_out = texts(backend([CHAT, "Name a fruit."], GREEDY))
    assert chat_out[0] == raw.create_chat_completion(messages=CHAT, seed=0, **kw)["choices"][0]["message"]["content"]
    assert text_out[0] == raw.create_completion("Name a fruit.", seed=0, **kw)["choices"][0]["text"]
    assert chat_out[0] != text_out[0]


def test_greedy_generations_are_identical(backend):
    gens = texts(backend(["The sky is"], GREEDY.replace(num_generations=3)))[0]
    assert len(gens) == 3 and len(set(gens)) == 1


def test_general_params_reach_the_sampler(backend):
    repetitive = "nine nine nine nine nine nine nine nine"
    plain = backend([repetitive], GREEDY.replace(max_new_tokens=8))[0][0].text
    penalized = backend([repetitive], GREEDY.replace(max_new_tokens=8, presence_penalty=2.0, frequency_penalty=2.0))
    assert penalized[0][0].text != plain
    # top_k=1 leaves one candidate: sampling at a high temperature is greedy
    top1 = texts(backend(["The sky is"], SAMPLE.replace(temperature=1.5, top_k=1, num_generations=2)))[0]
    assert top1 == texts(backend(["The sky is"], GREEDY.replace(num_generations=2)))[0]


def test_prompt_too_long_fails_only_its_row(backend):
    out = backend(["word " * 600, "The sky is"], GREEDY.replace(num_generations=2))
    assert all(isinstance(g, GenerationFailure) and "n_ctx" in g.error for g in out[0])
    assert all(isinstance(g, Generation) for g in out[1])


def test_composed_with_text_generation(backend):
    gen = fnlabel.llm(fnlabel.tasks.text_generation(system_prompt="Be brief."), backend, GREEDY)
    outputs = gen([{"input": "Name a fruit."}, {"input": "Name a colour."}], num_generations=2)
    assert [len(row) for row in outputs] == [2, 2]
    first = outputs[0][0]
    assert first["model_name"] == "SmolLM2-135M-Instruct.Q4_1"
    assert first["prompt_used"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a fruit."},
    ]
    assert first["raw_output"] == backend([first["prompt_used"]], GREEDY)[0][0].text
    assert first["parsed_output"] == {"generations": first["raw_output"]}
    with pytest.raises(ConfigError, match="n_ctx"):
        fnlabel.llm(fnlabel.tasks.text_generation(), backend, GenerationParams(max_new_tokens=512))


def test_backend_pickles_as_its_config(backend):
    clone = pickle.loads(pickle.dumps(backend))
    assert clone == backend
    assert texts(clone(["The sky is"], GREEDY)) == texts(backend(["The sky is"], GREEDY))


def test_a_string_that_starts_with_bos_gets_no_second_one(tmp_path):
    # A GGUF whose tokenizer adds BOS (Llama, Mistral) must not get a second one before a prompt that
    # already starts with it (the llama2 format's "<s>"): here the embedded GGUF with add_bos_token
    # switched on (its BOS is "<|im_start|>", which every chatml prompt starts with)
    import shutil
    import warnings

    import gguf

    from fnlabel.backends.models import embedded_gguf

    path = tmp_path / "bos.gguf"
    shutil.copyfile(embedded_gguf(), path)
    reader = gguf.GGUFReader(str(path), "r+")
    field = reader.fields["tokenizer.ggml.add_bos_token"]
    field.parts[field.data[0]][0] = True
    del reader  # flushes the memory map
    gen = llama_cpp(model=str(path), n_ctx=512)
    text = fnlabel.format_prompt(fnlabel.Prompt("Be brief.", "Name a fruit."), "chatml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # llama-cpp-python warns on a duplicate leading BOS
        [[answer]] = gen([text], GREEDY)
    assert isinstance(answer, Generation) and answer.text
    # what the model was fed: the string's own tokens, its one leading BOS included, nothing added
    model = gen.llama()
    fed = _prompt_tokens(model, text)
    assert fed == model.tokenize(text.encode(), add_bos=False, special=True)
    assert fed[0] == model.token_bos() != fed[1]
    # (comparing the greedy text with the chat path's is not a test of this: llama-cpp-python reuses its
    # prefix cache across calls, and its chat handler adds its own BOS, so the two can tip differently)
    gen.close()


def test_close_while_a_call_runs_waits_for_it_instead_of_crashing():
    # LLM.close() (or leaving `with`) while a submitted call still generates freed the model
    # under it: the process died with SIGSEGV. Run in a subprocess so a crash fails the test only.
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = textwrap.dedent(
        """
        import time
        from fnlabel import GenerationParams, llm, tasks
        from fnlabel.backends.llama_cpp import LlamaCppConfig
        backend = LlamaCppConfig(n_ctx=512, n_threads=1).build()
        gen = llm(tasks.text_generation(), backend, GenerationParams(max_new_tokens=48, temperature=0.0))
        gen([{"input": "warm up"}])
        fut = gen.submit([{"input": f"Tell a story number {i}."} for i in range(3)], 2)
        time.sleep(0.3)
        assert not fut.done()
        gen.close()
        assert fut.done()  # close() waited for the running call
        res = fut.result()
        assert len(res.outputs) == 3 and not res.failures
        assert gen([{"input": "again"}])[0][0]["raw_output"]  # a later call loads the model again
        gen.close()
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (proc.returncode, proc.stderr[-2000:])


# --- structured output ---------------------------------------------------------------------------


def test_a_json_schema_constrains_every_generation(backend):
    check_all_valid(backend, "llama-cpp")


def test_choices_and_a_regex_constrain_the_text(backend):
    picked = backend(["Is the sky blue?", CHAT], SAMPLE.replace(structured_output={"choice": ["yes", "no"]}))
    assert {g.text for row in picked for g in row} <= {"yes", "no"}
    phone = backend(
        ["My phone number is"], SAMPLE.replace(max_new_tokens=16, structured_output={"regex": r"\d{3}-\d{4}"})
    )
    assert re.fullmatch(r"\d{3}-\d{4}", phone[0][0].text)
