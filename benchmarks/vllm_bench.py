"""fnlabel's vLLM backend vs raw ``vllm.LLM.generate`` / ``LLM.chat`` on the same engine, prompts and params.

Both sides share one engine (loaded once, ~40 s on CPU) and alternate rounds,
so machine noise hits both alike. The fnlabel side is the full composed LLM
(task -> prompt format -> backend -> parse -> LLMOutput). Outputs are seeded,
so both sides must produce the same texts (checked), hence the same tokens:
tokens/s = tokens of one round x rounds / time. Rounds are paired and alternate
which side goes first; the median paired ratio is less sensitive to a busy
machine. ``fnlabel_share_in_vllm`` is the part of fnlabel's time spent inside
the vLLM call: the ratio fnlabel would reach on a quiet machine.

    python benchmarks/vllm_bench.py [--prompts 8] [--n 2] [--max-tokens 24] [--rounds 16]

Writes benchmarks/results/vllm.json. Target: fnlabel >= 0.97x raw tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ["the sea", "a lighthouse", "bread", "a robot", "winter", "a library", "trains", "bees"]


def ratios(result: dict) -> dict:
    """The common ``"ratios"`` block read by benchmarks/plot.py, from ``result["paths"]``."""
    return {
        f"fnlabel / raw vLLM, tokens/s, {path} path": {"value": side["ratio"], "target": 0.97, "better": "higher"}
        for path, side in result["paths"].items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/vllm.json"))
    args = ap.parse_args()

    import vllm
    from vllm import SamplingParams
    from vllm.platforms import current_platform

    import fnlabel
    from fnlabel.backends.vllm import VLLMConfig, sampling_kwargs
    from fnlabel.tasks import text_generation

    config = VLLMConfig(model="smollm2", dtype="float32", max_model_len=1024, enforce_eager=True, seed=0)
    t0 = time.perf_counter()
    backend = config.build()
    load_s = time.perf_counter() - t0
    engine, tok = backend.llm, backend.llm.get_tokenizer()

    params = fnlabel.GenerationParams(max_new_tokens=args.max_tokens, temperature=0.8, top_p=0.95, seed=1)
    rows = [{"input": f"Write a short story about {TOPICS[i % len(TOPICS)]} (#{i})."} for i in range(args.prompts)]
    task = text_generation(system_prompt="You are a creative writer.")
    sides = {}
    for path, fmt in (("generate", "chatml"), ("chat", "openai")):
        gen = fnlabel.llm(task, backend, params, prompt_format=fmt)
        prompts = [gen.format(task.build_prompt(r)) for r in rows]
        raw_method = getattr(engine, path)

        sp = SamplingParams(**sampling_kwargs(params.replace(num_generations=args.n)))
        in_engine = [0.0]

        def timed_engine_call(*a, _real=raw_method, **kw):  # time fnlabel spends inside vLLM
            t = time.perf_counter()
            try:
                return _real(*a, **kw)
            finally:
                in_engine[0] += time.perf_counter() - t

        def raw() -> list[list[str]]:
            return [[o.text for o in r.outputs] for r in raw_method(prompts, sp, use_tqdm=False)]

        def ours() -> list[list[str]]:
            return [[o["raw_output"] for o in row] for row in gen(rows, num_generations=args.n)]

        expected = raw()  # warm-up (the prefix cache then serves both sides alike)
        n_tokens = sum(len(tok.encode(t, add_special_tokens=False)) for row in expected for t in row)
        times: dict[str, list[float]] = {"raw": [], "fnlabel": []}
        same = True
        setattr(engine, path, timed_engine_call)
        try:
            for r in range(args.rounds):  # paired rounds, alternating which side goes first
                order = (("raw", raw), ("fnlabel", ours)) if r % 2 == 0 else (("fnlabel", ours), ("raw", raw))
                for name, fn in order:
                    t = time.perf_counter()
                    texts = fn()
                    times[name].append(time.perf_counter() - t)
                    same &= texts == expected
        finally:
            delattr(engine, path)
        ratios = sorted(a / b for a, b in zip(times["raw"], times["fnlabel"]))
        total = {k: sum(v) for k, v in times.items()}
        tps = {k: n_tokens * args.rounds / total[k] for k in total}
        sides[path] = {
            "raw_tokens_per_s": round(tps["raw"], 2),
            "fnlabel_tokens_per_s": round(tps["fnlabel"], 2),
            "ratio": round(tps["fnlabel"] / tps["raw"], 3),
            "median_paired_ratio": round(ratios[len(ratios) // 2], 3),
            "paired_ratios": [round(x, 3) for x in ratios],
            "fnlabel_share_in_vllm": round(in_engine[0] / total["fnlabel"], 6),
            "same_outputs": same,
            "raw_s": round(total["raw"], 2),
            "fnlabel_s": round(total["fnlabel"], 2),
            "generated_tokens_per_round": n_tokens,
        }
        print(
            f"{path:8s} raw {tps['raw']:7.1f} tok/s  fnlabel {tps['fnlabel']:7.1f} tok/s  "
            f"ratio {sides[path]['ratio']:.3f} (median paired {sides[path]['median_paired_ratio']:.3f}; "
            f"{100 * sides[path]['fnlabel_share_in_vllm']:.2f}% of fnlabel's time inside vLLM)  "
            f"same outputs: {sides[path]['same_outputs']}",
            flush=True,
        )
    result = {
        "benchmark": "fnlabel vLLM backend vs raw vllm.LLM (same engine, prompts, params)",
        "target": "ratio >= 0.97",
        "vllm": vllm.__version__,
        "model": "SmolLM2-135M-Instruct (embedded GGUF -> HF folder), float32, enforce_eager",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu(s), vLLM device {current_platform.device_type}",
        "prompts": args.prompts,
        "num_generations": args.n,
        "max_new_tokens": args.max_tokens,
        "rounds": args.rounds,
        "engine_load_s": round(load_s, 1),
        "paths": sides,
    }
    result["ratios"] = ratios(result)  # the common shape read by benchmarks/plot.py
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    backend.close()


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    main()
