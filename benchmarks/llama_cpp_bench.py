"""fnlabel's llama.cpp backend vs raw ``Llama.create_completion``, same model, prompts and params, one run.

Both sides use the same loaded ``Llama`` object and the same per-generation seeds,
so they produce the same tokens; rounds alternate between the sides and the
best round of each is compared (the median is reported too). The fnlabel side
goes through the whole composed LLM (``fnlabel.llm`` + ``text_generation``).

    python benchmarks/llama_cpp_bench.py [--prompts 16] [--max-new-tokens 48] [--rounds 3] [--threads 2]

Writes benchmarks/results/llama_cpp.json. Target: fnlabel >= 0.97x raw tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fnlabel  # noqa: E402
from fnlabel import GenerationParams  # noqa: E402
from fnlabel.backends.llama_cpp import llama_cpp, sampling_kwargs  # noqa: E402
from fnlabel.seeds import generation_seed  # noqa: E402

TOPICS = ["the sea", "a dragon", "bread", "the moon", "a robot", "winter", "a library", "cats",
          "a volcano", "music", "a bicycle", "rain", "chess", "a forest", "coffee", "a city at night"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    prompts = [f"Write a short paragraph about {TOPICS[i % len(TOPICS)]}." for i in range(args.prompts)]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95, seed=1)
    backend = llama_cpp(model="smollm2", n_ctx=1024, n_threads=args.threads)
    model = backend.llama()
    kw = sampling_kwargs(backend.config, params)
    gen = fnlabel.llm(fnlabel.tasks.text_generation(system_prompt=""), backend, params, prompt_format="default")
    inputs = [{"input": p} for p in prompts]

    def raw() -> tuple[list[str], int]:
        texts, tokens = [], 0
        for p in prompts:
            r = model.create_completion(p, seed=generation_seed(params.seed, 0), **kw)
            texts.append(r["choices"][0]["text"])
            tokens += r["usage"]["completion_tokens"]
        return texts, tokens

    def ours() -> list[str]:
        return [row[0]["raw_output"] for row in gen(inputs)]

    raw_texts, tokens = raw()  # warm-up, and the token count of both sides
    same = ours() == raw_texts
    times: dict[str, list[float]] = {"raw": [], "fnlabel": []}
    for _ in range(args.rounds):
        for name, fn in (("raw", raw), ("fnlabel", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    tps = {k: tokens / min(v) for k, v in times.items()}
    tps_median = {k: tokens / statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "llama_cpp",
        "model": backend.model_name,
        "prompts": len(prompts),
        "max_new_tokens": params.max_new_tokens,
        "n_threads": args.threads,
        "rounds": args.rounds,
        "completion_tokens": tokens,
        "identical_outputs": same,
        "seconds": times,
        "tokens_per_s_best": tps,
        "tokens_per_s_median": tps_median,
        "ratio_fnlabel_vs_raw_best": tps["fnlabel"] / tps["raw"],
        "ratio_fnlabel_vs_raw_median": tps_median["fnlabel"] / tps_median["raw"],
        "target": 0.97,
    }
    out = Path(__file__).parent / "results" / "llama_cpp.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"llama.cpp: raw {tps['raw']:.1f} tok/s, fnlabel {tps['fnlabel']:.1f} tok/s -> "
        f"{result['ratio_fnlabel_vs_raw_best']:.3f}x best, {result['ratio_fnlabel_vs_raw_median']:.3f}x median "
        f"(target >= 0.97x; identical outputs: {same})"
    )


if __name__ == "__main__":
    main()
