"""Top-level factories for in_process tests: they pickle by reference and run in the child."""

from __future__ import annotations

import ctypes
import os
import threading
from functools import lru_cache

import fnlabel
from fnlabel import GenerationParams, backends, tasks
from fnlabel.backends.echo import prompt_text
from fnlabel.backends.models import embedded_gguf

TASK = tasks.text_generation(system_prompt="")
LLAMA_PARAMS = GenerationParams(max_new_tokens=8, temperature=0.0, seed=7)


def echo_llm() -> fnlabel.LLM:
    """An echo LLM whose model_name carries the pid of the process that built it."""
    return fnlabel.llm(TASK, backends.echo(model_name=f"echo-pid-{os.getpid()}"))


def slow_echo_llm() -> fnlabel.LLM:
    return fnlabel.llm(TASK, backends.echo(model_name="slow", latency=60.0))


def half_second_echo_llm() -> fnlabel.LLM:
    return fnlabel.llm(TASK, backends.echo(model_name="half-second", latency=0.5))


def raising_echo_llm() -> fnlabel.LLM:
    return fnlabel.llm(TASK, backends.echo(model_name="raiser", raise_on="boom"))


def broken_factory() -> fnlabel.LLM:
    raise RuntimeError("factory exploded: no GPU here")


def crash_backend(prompts, params):
    """Echo, except that 'exit' ends the process with code 3 and 'segv' dereferences NULL."""
    for p in prompts:
        text = prompt_text(p)
        if "exit" in text:
            os._exit(3)
        if "segv" in text:
            ctypes.string_at(0)
    return backends.echo()(prompts, params)


def crashing_llm() -> fnlabel.LLM:
    return fnlabel.llm(TASK, crash_backend, model_name="crasher")


def make_barrier_backend(barrier: threading.Barrier, name: str):
    """A backend that returns only once ``barrier.parties`` calls are inside it at the same time."""

    def generate(prompts, params):
        barrier.wait(timeout=10)
        return backends.echo(model_name=name)(prompts, params)

    generate.model_name = name
    return generate


# --- the real embedded model through llama-cpp-python -----------------------------------------


@lru_cache(maxsize=1)
def _llama():
    import llama_cpp

    return llama_cpp.Llama(model_path=str(embedded_gguf()), n_ctx=512, n_threads=1, seed=7, verbose=False)


def llama_backend(prompts, params):
    """A minimal generate() over llama_cpp.Llama.create_completion (one completion per generation)."""
    model = _llama()
    out = []
    for prompt in prompts:
        gens = []
        for g in range(params.num_generations):
            res = model.create_completion(
                prompt_text(prompt),
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=None if params.seed is None else params.seed + g,
                stop=list(params.stop) or None,
            )
            gens.append(res["choices"][0]["text"])
        out.append(gens)
    return out


llama_backend.model_name = "smollm2-llama-cpp"


def llama_llm() -> fnlabel.LLM:
    """The embedded SmolLM2 model, greedy, ChatML prompts."""
    return fnlabel.llm(TASK, llama_backend, LLAMA_PARAMS, prompt_format="chatml")


class SeedSampler:
    """A sampling backend as the real ones seed it: generation i uses generation_seed(seed, i), else a random seed."""

    model_name = "seed-sampler"
    cache_identity = "seed-sampler-v1"

    def __call__(self, prompts, params):
        from fnlabel.seeds import generation_seeds

        return [[f"sample {s}" for s in generation_seeds(params.seed, params.num_generations)] for _ in prompts]


def seeded_sampler_llm() -> fnlabel.LLM:
    return fnlabel.llm(TASK, SeedSampler(), GenerationParams(seed=7))


def _refuse_to_load():
    raise RuntimeError("this parsed value cannot be rebuilt in the parent")


class ParentCannotLoad:
    """A parsed value that pickles in the child but raises when the parent unpickles it."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def _parse_to_unloadable(text):
    return ParentCannotLoad() if "poison" in text else {"generations": text}


def unloadable_result_llm() -> fnlabel.LLM:
    import attrs

    return fnlabel.llm(attrs.evolve(TASK, parse=_parse_to_unloadable), backends.echo(model_name="unloadable"))
