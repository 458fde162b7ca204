"""fnlabel's transformers backend vs raw batched ``generate`` and vs a per-prompt loop, one run.

All sides use the same loaded model and tokenizer (SmolLM2-135M, the embedded GGUF
dequantized to fp32) and 16 prompts of different lengths:

* ``raw_batched``: one ``model.generate`` on the 16 prompts, left-padded by the tokenizer;
* ``fnlabel``: the composed LLM (``fnlabel.llm`` + ``text_generation``) with ``batch_size=16``;
* ``loop``: one ``model.generate`` per prompt (what a per-prompt pipeline does).

Greedy decoding, so every side generates the same tokens (checked). fnlabel and raw
batched run back to back in alternating order each round (a shared machine's load hits
both alike); best round, median round and median of back-to-back pairs are reported. A seeded
sampling round (fnlabel's per-sequence generators vs transformers' global-RNG sampling)
is timed as well.

    python benchmarks/transformers_bench.py [--prompts 16] [--max-new-tokens 32] [--rounds 3]

Writes benchmarks/results/transformers.json. Targets: fnlabel >= 0.95x raw batched, >= 3x the loop.
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
from fnlabel.backends.transformers import transformers

TOPICS = [
    "the sea",
    "a dragon that guards a very old library",
    "bread",
    "the moon and its phases",
    "a robot",
    "winter in a small mountain village",
    "cats",
    "a volcano",
    "music",
    "a bicycle",
    "rain on a tin roof at night",
    "chess",
    "a forest",
    "coffee",
    "a city at night",
    "the history of paper",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = [f"Here is a long essay about {TOPICS[i % len(TOPICS)]}.\n\n" for i in range(args.prompts)]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    backend = transformers(model="smollm2", batch_size=args.prompts)
    loaded = backend.loaded()
    model, tok = loaded.model, loaded.tokenizer
    gen = fnlabel.llm(fnlabel.tasks.text_generation(system_prompt=""), backend, params, prompt_format="default")
    inputs = [{"input": p} for p in prompts]
    common = {"max_new_tokens": params.max_new_tokens, "pad_token_id": tok.pad_token_id}

    def decode(seqs, width: int) -> list[str]:
        return tok.batch_decode(seqs[:, width:], skip_special_tokens=True)

    def raw_batched(**kw) -> list[str]:
        enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
        with torch.inference_mode():
            seqs = model.generate(**enc, **common, **kw)
        return decode(seqs, enc["input_ids"].shape[1])

    def loop() -> list[str]:
        texts = []
        for p in prompts:
            enc = tok(p, return_tensors="pt")
            with torch.inference_mode():
                seqs = model.generate(**enc, **common, do_sample=False)
            texts += decode(seqs, enc["input_ids"].shape[1])
        return texts

    def ours(p: GenerationParams = params) -> list[str]:
        llm = gen if p is params else fnlabel.llm(gen.task, backend, p, prompt_format="default")
        return [row[0]["raw_output"] for row in llm(inputs)]

    reference = raw_batched(do_sample=False)  # warm-up
    checks = {"fnlabel == raw_batched": ours() == reference, "loop == raw_batched": loop() == reference}
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in reference)
    sides = {"raw_batched": lambda: raw_batched(do_sample=False), "fnlabel": ours, "loop": loop}
    times: dict[str, list[float]] = {k: [] for k in sides}
    sampled = params.replace(temperature=0.7, top_p=0.95, seed=1)
    sample_sides = {
        "raw_batched_sampled": lambda: raw_batched(do_sample=True, temperature=0.7, top_p=0.95, top_k=0),
        "fnlabel_sampled": lambda: ours(sampled),
    }
    times.update({k: [] for k in sample_sides})
    paired: dict[str, list[float]] = {"greedy": [], "sampled": []}
    # the machine is shared: the sides compared with each other run back to back, in alternating order
    for r in range(args.rounds):
        pairs = [("raw_batched", "fnlabel"), ("raw_batched_sampled", "fnlabel_sampled")]
        for (a, b), key in zip(pairs, paired):
            for name in (a, b) if r % 2 == 0 else (b, a):
                t0 = time.perf_counter()
                {**sides, **sample_sides}[name]()
                times[name].append(time.perf_counter() - t0)
            paired[key].append(times[a][-1] / times[b][-1])
        t0 = time.perf_counter()
        loop()
        times["loop"].append(time.perf_counter() - t0)

    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "transformers",
        "model": backend.model_name,
        "device": str(loaded.device),
        "torch_threads": torch.get_num_threads(),
        "prompts": len(prompts),
        "max_new_tokens": params.max_new_tokens,
        "rounds": args.rounds,
        "greedy_new_tokens": tokens,
        "checks": checks,
        "seconds": times,
        "greedy_tokens_per_s_best": {k: tokens / best[k] for k in sides},
        "ratio_fnlabel_vs_raw_batched_best": best["raw_batched"] / best["fnlabel"],
        "ratio_fnlabel_vs_raw_batched_median": med["raw_batched"] / med["fnlabel"],
        "ratio_fnlabel_vs_raw_batched_paired_median": statistics.median(paired["greedy"]),
        "ratio_sampled_fnlabel_vs_raw_batched_paired_median": statistics.median(paired["sampled"]),
        "ratio_fnlabel_vs_loop_best": best["loop"] / best["fnlabel"],
        "ratio_fnlabel_vs_loop_median": med["loop"] / med["fnlabel"],
        "ratio_sampled_fnlabel_vs_raw_batched_best": best["raw_batched_sampled"] / best["fnlabel_sampled"],
        "targets": {"vs_raw_batched": 0.95, "vs_loop": 3.0},
    }
    out = Path(__file__).parent / "results" / "transformers.json"
    out.parent.mkdir(exist_ok=True)
    result["ratios"] = {
        "fnlabel batched / raw batched generate, tokens/s (paired median)": {
            "value": result["ratio_fnlabel_vs_raw_batched_paired_median"],
            "target": 0.95,
            "better": "higher",
        },
        "fnlabel batched / per-prompt loop, tokens/s": {
            "value": result["ratio_fnlabel_vs_loop_median"],
            "target": 3.0,
            "better": "higher",
        },
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    r = result
    print(
        f"transformers ({r['device']}, {r['prompts']} prompts x {r['max_new_tokens']} tokens, greedy): "
        f"fnlabel vs raw batched {r['ratio_fnlabel_vs_raw_batched_best']:.3f}x best "
        f"({r['ratio_fnlabel_vs_raw_batched_median']:.3f}x median, "
        f"{r['ratio_fnlabel_vs_raw_batched_paired_median']:.3f}x median of back-to-back pairs; target >= 0.95x), "
        f"vs per-prompt loop {r['ratio_fnlabel_vs_loop_best']:.2f}x best "
        f"({r['ratio_fnlabel_vs_loop_median']:.2f}x median; target >= 3x); "
        f"seeded sampling vs raw sampling {r['ratio_sampled_fnlabel_vs_raw_batched_best']:.3f}x best, "
        f"{r['ratio_sampled_fnlabel_vs_raw_batched_paired_median']:.3f}x paired median; checks {checks}"
    )


if __name__ == "__main__":
    main()
