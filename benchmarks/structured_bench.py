"""What structured output costs and gives, per local backend: time per output token and valid rate.

For each local backend (llama.cpp, transformers, vLLM on CPU), the same 20 chat prompts
(tests/structured_helpers.py: a person as JSON, with an integer range and an enum), the
same seeds and 2 sampled generations each, run with and without the JSON-schema
constraint, alternating for ``--rounds`` rounds. Reported per backend: seconds per output
token with the constraint / without (median of the rounds; the goal is <= 1.5x), and the
share of schema-valid generations with and without. Writes benchmarks/results/structured.json.

    python benchmarks/structured_bench.py [--rounds 3] [--backends llama-cpp transformers vllm]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.structured_helpers import PARAMS, PROMPTS, SCHEMA, valid


def build(kind: str) -> Any:
    if kind == "llama-cpp":
        from fnlabel.backends.llama_cpp import llama_cpp

        return llama_cpp(model="smollm2", n_ctx=1024)
    if kind == "transformers":
        from fnlabel.backends.transformers import transformers

        return transformers(model="smollm2", batch_size=20, device="cpu")
    from fnlabel.backends.vllm import vllm

    return vllm(model="smollm2", dtype="float32", max_model_len=1024, enforce_eager=True, seed=0)


def timed(backend: Any, constrained: bool) -> tuple[float, int, tuple[int, int]]:
    params = PARAMS.replace(structured_output={"json_schema": SCHEMA}) if constrained else PARAMS
    start = time.perf_counter()
    out = backend(PROMPTS, params)
    elapsed = time.perf_counter() - start
    tokens = sum(g.output_tokens or 0 for row in out for g in row)
    return elapsed, tokens, valid(out)


def measure(kind: str, rounds: int) -> dict[str, Any]:
    backend = build(kind)
    timed(backend, True)  # warm up: the model, and the grammar compiled once per schema
    per_token: dict[bool, list[float]] = {False: [], True: []}
    rates: dict[bool, tuple[int, int]] = {}
    for r in range(rounds):
        for constrained in (False, True) if r % 2 == 0 else (True, False):
            elapsed, tokens, ok = timed(backend, constrained)
            per_token[constrained].append(elapsed / max(tokens, 1))
            rates[constrained] = ok
    backend.close()
    free, bound = statistics.median(per_token[False]), statistics.median(per_token[True])
    result = {
        "ms_per_output_token_unconstrained": round(free * 1000, 3),
        "ms_per_output_token_constrained": round(bound * 1000, 3),
        "constrained_over_unconstrained": round(bound / free, 3),
        "schema_valid_constrained": f"{rates[True][0]}/{rates[True][1]}",
        "schema_valid_unconstrained": f"{rates[False][0]}/{rates[False][1]}",
    }
    print(
        f"{kind:13} {result['ms_per_output_token_unconstrained']:8.2f} ms/token free  "
        f"{result['ms_per_output_token_constrained']:8.2f} constrained  "
        f"{result['constrained_over_unconstrained']:.2f}x   valid {result['schema_valid_constrained']} "
        f"constrained vs {result['schema_valid_unconstrained']} free"
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["llama-cpp", "transformers", "vllm"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "structured.json"))
    args = ap.parse_args()
    results = {kind: measure(kind, args.rounds) for kind in args.backends}
    out = {
        "benchmark": "structured",
        "what": "seconds per output token with a JSON-schema constraint / without, and the schema-valid share",
        "prompts": f"{len(PROMPTS)} chat prompts x {PARAMS.num_generations} generations, max_new_tokens "
        f"{PARAMS.max_new_tokens}, temperature {PARAMS.temperature}",
        "rounds": args.rounds,
        "python": platform.python_version(),
        "results": results,
        "ratios": {  # the common shape read by benchmarks/plot.py
            f"{kind}: constrained / unconstrained, time per output token": {
                "value": r["constrained_over_unconstrained"],
                "target": 1.5,
                "better": "lower",
            }
            for kind, r in results.items()
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":  # (vLLM spawns its engine process)
    main()
