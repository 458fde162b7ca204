"""fnlabel's llama.cpp backend vs raw ``Llama.create_completion``, same model, prompts and params, one run.

Both sides use the same loaded ``Llama`` object and the same per-generation seeds,
so they produce the same tokens (checked). The fnlabel side goes through the whole
composed LLM (``fnlabel.llm`` + ``text_generation``), one call per prompt (its per-call
overhead is counted 16 times). The sides alternate prompt by prompt (ABBA order), so
the load of a shared machine hits both alike; wall-clock and process CPU-time ratios
are reported, best and median round.

    python benchmarks/llama_cpp_bench.py [--prompts 16] [--max-new-tokens 32] [--rounds 3] [--threads 2]

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

import fnlabel
from fnlabel import GenerationParams
from fnlabel.backends.llama_cpp import llama_cpp, sampling_kwargs
from fnlabel.seeds import generation_seed

TOPICS = [
    "the sea",
    "a dragon",
    "bread",
    "the moon",
    "a robot",
    "winter",
    "a library",
    "cats",
    "a volcano",
    "music",
    "a bicycle",
    "rain",
    "chess",
    "a forest",
    "coffee",
    "a city at night",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    prompts = [f"Here is a long essay about {TOPICS[i % len(TOPICS)]}.\n\n" for i in range(args.prompts)]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95, seed=1)
    backend = llama_cpp(model="smollm2", n_ctx=1024, n_threads=args.threads)
    model = backend.llama()
    kw = sampling_kwargs(backend.config, params)
    gen = fnlabel.llm(fnlabel.tasks.text_generation(system_prompt=""), backend, params, prompt_format="default")
    inputs = [{"input": p} for p in prompts]

    def raw(i: int) -> tuple[str, int]:
        r = model.create_completion(prompts[i], seed=generation_seed(params.seed, 0), **kw)
        return r["choices"][0]["text"], r["usage"]["completion_tokens"]

    def ours(i: int) -> str:
        return gen(inputs[i : i + 1])[0][0]["raw_output"]

    warm = [raw(i) for i in range(len(prompts))]  # warm-up, and the token count of both sides
    tokens = sum(t for _, t in warm)
    same = [ours(i) for i in range(len(prompts))] == [text for text, _ in warm]
    # the machine is shared: interleave the sides prompt by prompt (ABBA order) so load drifts cancel,
    # and time both wall clock and this process's CPU time
    sides = {"raw": raw, "fnlabel": ours}
    wall = {k: [0.0] * args.rounds for k in sides}
    cpu = {k: [0.0] * args.rounds for k in sides}
    paired = []  # raw time / fnlabel time of the same prompt, measured back to back
    for r in range(args.rounds):
        for i in range(len(prompts)):
            order = ["raw", "fnlabel"] if (r + i) % 2 == 0 else ["fnlabel", "raw"]
            pair = {}
            for name in order:
                w0, c0 = time.perf_counter(), time.process_time()
                sides[name](i)
                pair[name] = time.perf_counter() - w0
                wall[name][r] += pair[name]
                cpu[name][r] += time.process_time() - c0
            paired.append(pair["raw"] / pair["fnlabel"])

    def ratio(times: dict[str, list[float]], pick) -> float:
        return pick(times["raw"]) / pick(times["fnlabel"])  # = fnlabel tok/s / raw tok/s

    result = {
        "benchmark": "llama_cpp",
        "model": backend.model_name,
        "prompts": len(prompts),
        "max_new_tokens": params.max_new_tokens,
        "n_threads": args.threads,
        "rounds": args.rounds,
        "completion_tokens_per_round": tokens,
        "identical_outputs": same,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "wall_tokens_per_s_best": {k: tokens / min(v) for k, v in wall.items()},
        "cpu_tokens_per_s_best": {k: tokens / min(v) for k, v in cpu.items()},
        "ratio_wall_best": ratio(wall, min),
        "ratio_wall_median": ratio(wall, statistics.median),
        "ratio_paired_median": statistics.median(paired),
        "ratio_cpu_best": ratio(cpu, min),
        "ratio_cpu_median": ratio(cpu, statistics.median),
        "target": 0.97,
    }
    out = Path(__file__).parent / "results" / "llama_cpp.json"
    out.parent.mkdir(exist_ok=True)
    result["ratios"] = {
        "fnlabel / raw create_completion, tokens/s (paired median)": {
            "value": result["ratio_paired_median"],
            "target": 0.97,
            "better": "higher",
        },
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    tps = result["wall_tokens_per_s_best"]
    print(
        f"llama.cpp: raw {tps['raw']:.1f} tok/s, fnlabel {tps['fnlabel']:.1f} tok/s (wall, best round); "
        f"fnlabel/raw tokens/s: wall {result['ratio_wall_best']:.3f}x best round, {result['ratio_wall_median']:.3f}x median round, "
        f"{result['ratio_paired_median']:.3f}x median of back-to-back pairs; "
        f"CPU time {result['ratio_cpu_best']:.3f}x best, {result['ratio_cpu_median']:.3f}x median "
        f"(target >= 0.97x; identical outputs: {same})"
    )


if __name__ == "__main__":
    main()
