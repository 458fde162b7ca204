"""What the per-sample cache costs.

1. On the no-work echo backend: microseconds per generation added by a cold cache
   (every generation computed and written) and taken by a warm one (every generation
   read back), next to the uncached call.
2. On llama.cpp with the embedded SmolLM2-135M (driven by a plain backend function):
   time of a cached-cold run / time of an uncached run (same seeds, so the same
   tokens are generated), and the warm rerun's ratio.

Run: ``python benchmarks/cache_bench.py`` (writes benchmarks/results/cache.json).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnlabel import GenerationParams, cached, llm, tasks
from fnlabel.backends import echo
from fnlabel.backends.models import embedded_gguf

RESULTS = Path(__file__).resolve().parent / "results" / "cache.json"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_echo(rows: int = 2000, k: int = 4, repeats: int = 5) -> dict:
    data = [{"input": f"row {i}: a question about something of some length"} for i in range(rows)]
    plain = llm(tasks.text_generation(), echo(), GenerationParams(max_new_tokens=32))
    gens = rows * k
    uncached, cold, warm = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            gen = cached(plain, os.path.join(tmp, "c.sqlite"))
            uncached.append(timed(lambda: plain.run(data, k)))
            cold.append(timed(lambda: gen.run(data, k)))
            warm.append(timed(lambda: gen.run(data, k)))
            gen.backend.store.close()
    us = lambda xs: min(xs) / gens * 1e6
    return {
        "rows": rows,
        "num_generations": k,
        "uncached_us_per_generation": round(us(uncached), 2),
        "cached_cold_us_per_generation": round(us(cold), 2),
        "cached_warm_us_per_generation": round(us(warm), 2),
        "cold_overhead_us_per_generation": round(us(cold) - us(uncached), 2),
        "warm_overhead_us_per_generation": round(us(warm) - us(uncached), 2),
    }


def llama_backend(n_threads: int = 1):
    """A plain backend over llama_cpp.Llama (seeded per generation, so runs are comparable).

    One thread: llama.cpp's spinning worker threads degrade badly on a shared 2-core machine.
    """
    from llama_cpp import Llama

    model = Llama(model_path=str(embedded_gguf()), n_ctx=512, n_threads=n_threads, verbose=False)
    lock = threading.Lock()

    def generate(prompts, params):
        with lock:
            return [
                [
                    model.create_completion(
                        p,
                        max_tokens=params.max_new_tokens,
                        temperature=params.temperature,
                        seed=(params.seed or 0) + i,
                    )["choices"][0]["text"]
                    for i in range(params.num_generations)
                ]
                for p in prompts
            ]

    generate.cache_identity = "bench-llama.cpp:smollm2"
    generate.model_name = "smollm2"
    return generate


def bench_llama(prompts: int = 4, k: int = 2, tokens: int = 8, repeats: int = 6) -> dict:
    backend = llama_backend()
    params = GenerationParams(max_new_tokens=tokens, temperature=0.7, seed=1234)
    data = [{"input": f"Give one short fact about the number {i}."} for i in range(prompts)]
    plain = llm(tasks.text_generation(system_prompt=""), backend, params, prompt_format="chatml")
    plain.run(data[:1], 1)  # warm the model up
    uncached, cold, warm = [], [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            gen = cached(plain, os.path.join(tmp, "c.sqlite"))
            # alternate which runs first, so drift in the machine's load hits both sides
            outs = {}
            runs = [("uncached", plain, uncached), ("cold", gen, cold)]
            for name, target, times in runs if r % 2 == 0 else runs[::-1]:
                times.append(timed(lambda: outs.__setitem__(name, target.run(data, k).outputs)))
            # same seeds, so both sides generated the same tokens: the comparison is like for like
            assert outs["uncached"] == outs["cold"], "cached-cold outputs differ from uncached ones"
            warm.append(timed(lambda: gen.run(data, k)))
            gen.backend.store.close()
    med = statistics.median
    return {
        "prompts": prompts,
        "num_generations": k,
        "max_new_tokens": tokens,
        "uncached_s": round(med(uncached), 3),
        "cached_cold_s": round(med(cold), 3),
        "cached_warm_s": round(med(warm), 4),
        "uncached_s_each": [round(x, 3) for x in uncached],
        "cached_cold_s_each": [round(x, 3) for x in cold],
        # best of repeats on each side: the runs least disturbed by other load on the machine
        "cold_over_uncached_ratio": round(min(cold) / min(uncached), 3),
        "warm_over_uncached_ratio": round(min(warm) / min(uncached), 5),
        "median_of_paired_cold_ratios": round(med(c / u for c, u in zip(cold, uncached)), 3),
    }


def ratios(results: dict) -> dict:
    """The common ``"ratios"`` block read by benchmarks/plot.py, from the figures above."""
    echo = results["echo"]
    block = {
        "echo: cached cold / uncached, us per generation": {
            "value": round(echo["cached_cold_us_per_generation"] / echo["uncached_us_per_generation"], 3),
            "better": "lower",
        },
        "echo: cached warm / uncached, us per generation": {
            "value": round(echo["cached_warm_us_per_generation"] / echo["uncached_us_per_generation"], 3),
            "better": "lower",
        },
    }
    llama = results.get("llama_cpp", {})
    if "cold_over_uncached_ratio" in llama:  # time ratios, turned into throughput (higher is better)
        block["llama.cpp: cached cold / uncached, throughput, best of repeats"] = {
            "value": round(1 / llama["cold_over_uncached_ratio"], 3),
            "better": "higher",
        }
        block["llama.cpp: cached cold / uncached, throughput, median of paired runs"] = {
            "value": round(1 / llama["median_of_paired_cold_ratios"], 3),
            "better": "higher",
        }
    return block


def main() -> None:
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}",
        "load_average_at_start": os.getloadavg()[0],
        "echo": bench_echo(),
    }
    print(json.dumps({"echo": results["echo"]}, indent=2), flush=True)
    try:
        results["llama_cpp"] = bench_llama()
    except ImportError as exc:
        results["llama_cpp"] = {"skipped": str(exc)}
    print(json.dumps({"llama_cpp": results["llama_cpp"]}, indent=2))
    results["ratios"] = ratios(results)  # the common shape read by benchmarks/plot.py
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
