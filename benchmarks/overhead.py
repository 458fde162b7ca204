"""Per-input overhead of the composed LLM with a no-work backend, side by side with distilabel 0.6.0.

Both sides do everything an LLM call does except the model: check the inputs, build
each prompt with the text-generation task, format it ("default"), hand the prompts
to a "model" that returns a constant string per generation, parse each generation
and assemble the ``LLMOutput`` dicts. distilabel's side is an ``LLM`` subclass whose
``_generate`` is vLLM's ``_generate`` without the engine (distilabel 0.6.0 puts the
prompt building, parsing and output assembly in each subclass's ``_generate``).

Times are CPU time of the process (``time.process_time``), best of several runs: the
loops are single-threaded and CPU-bound, and CPU time does not count the moments a busy
machine (CI, shared cores) runs something else, which wall time would charge to
whichever side happened to be running.

fnlabel runs twice: with its default output (the seed's four keys: the target), and with
``metadata=True`` and a no-work backend that returns :class:`fnlabel.Generation` records
(finish reason and token counts, as ``fnlabel run`` writes them): reported, not targeted.

Run: ``python benchmarks/overhead.py [--inputs 20000] [--generations 1 3] [--repeats 5]``.
Prints microseconds per input for each side and the ratio fnlabel / distilabel (target
<= 0.8 with metadata off), and writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from peers import run_peer

import fnlabel

SYSTEM = "You are a helpful, respectful and honest assistant."
RAW = "A constant answer from a model that does no work."

DISTILABEL = r"""
import gc, json, sys, time
from distilabel.llm.base import LLM
from distilabel.llm.utils import LLMOutput
from distilabel.tasks import TextGenerationTask

SYSTEM, RAW = sys.argv[1], sys.argv[2]
n, ks, repeats = int(sys.argv[3]), [int(k) for k in sys.argv[4].split(",")], int(sys.argv[5])


class NoWorkLLM(LLM):
    # vLLM's _generate in distilabel 0.6.0, with the engine call replaced by constant strings
    @property
    def model_name(self):
        return "no-work"

    def _generate(self, inputs, num_generations=1):
        prompts = self._generate_prompts(inputs, default_format=None)
        requests = [[RAW] * num_generations for _ in prompts]
        outputs = []
        for request, prompt in zip(requests, prompts):
            output = []
            for text in request:
                try:
                    parsed_output = self.task.parse_output(text)
                except Exception as e:
                    parsed_output = None
                output.append(
                    LLMOutput(
                        model_name=self.model_name,
                        prompt_used=prompt,
                        raw_output=text,
                        parsed_output=parsed_output,
                    )
                )
            outputs.append(output)
        return outputs


llm = NoWorkLLM(task=TextGenerationTask(system_prompt=SYSTEM), prompt_format="default")
inputs = [{"input": f"Question number {i}: what is {i} + {i}?"} for i in range(n)]
result = {}
for k in ks:
    out = llm.generate(inputs, num_generations=k)
    assert len(out) == n and all(len(row) == k for row in out), "bad shape"
    assert out[-1][-1]["parsed_output"] == {"generations": RAW}
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        llm.generate(inputs, num_generations=k)
        best = min(best, time.process_time() - start)
    result[str(k)] = best / n * 1e6
print(json.dumps(result))
"""


def no_work(prompts, params):
    """A backend that does no work: one constant string per generation."""
    return [[RAW] * params.num_generations for _ in prompts]


RECORD = fnlabel.Generation(RAW, finish_reason="stop", input_tokens=24, output_tokens=11)


def no_work_records(prompts, params):
    """The same, with what a real backend reports of each generation."""
    return [[RECORD] * params.num_generations for _ in prompts]


def fnlabel_us_per_input(n: int, ks: list[int], repeats: int, metadata: bool = False) -> dict[str, float]:
    task = fnlabel.tasks.text_generation(system_prompt=SYSTEM)
    backend = no_work_records if metadata else no_work
    gen = fnlabel.llm(task, backend, prompt_format="default", metadata=metadata)
    inputs = [{"input": f"Question number {i}: what is {i} + {i}?"} for i in range(n)]
    result = {}
    for k in ks:
        out = gen(inputs, num_generations=k)
        assert len(out) == n and all(len(row) == k for row in out), "bad shape"
        assert out[-1][-1]["parsed_output"] == {"generations": RAW}
        assert ("metadata" in out[-1][-1]) == metadata
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            gen(inputs, num_generations=k)
            best = min(best, time.process_time() - start)
        result[str(k)] = best / n * 1e6
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=20_000)
    ap.add_argument("--generations", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternate fnlabel / distilabel this many times")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "overhead.json"))
    args = ap.parse_args()

    ks = args.generations
    fn_best = {str(k): float("inf") for k in ks}
    di_best, meta_best = dict(fn_best), dict(fn_best)
    for _ in range(args.rounds):  # alternate, so a busy moment on the machine hits both sides
        for k, us in fnlabel_us_per_input(args.inputs, ks, args.repeats).items():
            fn_best[k] = min(fn_best[k], us)
        for k, us in fnlabel_us_per_input(args.inputs, ks, args.repeats, metadata=True).items():
            meta_best[k] = min(meta_best[k], us)
        peer = run_peer(DISTILABEL, SYSTEM, RAW, str(args.inputs), ",".join(map(str, ks)), str(args.repeats))
        for k, us in peer.items():
            di_best[k] = min(di_best[k], us)

    rows = []
    runs = f"best of {args.rounds} x {args.repeats} runs"
    print(f"per-input overhead, {args.inputs} inputs, {runs} (CPU microseconds/input)")
    print(
        f"{'num_generations':>16} {'fnlabel':>10} {'distilabel 0.6.0':>17} {'ratio':>7} {'+metadata':>10} {'ratio':>7}"
    )
    for k in map(str, ks):
        ratio, meta_ratio = fn_best[k] / di_best[k], meta_best[k] / di_best[k]
        rows.append(
            {
                "num_generations": int(k),
                "fnlabel_us_per_input": round(fn_best[k], 3),
                "distilabel_us_per_input": round(di_best[k], 3),
                "ratio": round(ratio, 3),
                "fnlabel_metadata_us_per_input": round(meta_best[k], 3),
                "metadata_ratio": round(meta_ratio, 3),
            }
        )
        line = f"{k:>16} {fn_best[k]:>10.2f} {di_best[k]:>17.2f} {ratio:>6.2f}x"
        print(f"{line} {meta_best[k]:>10.2f} {meta_ratio:>6.2f}x")
    worst = max(r["ratio"] for r in rows)
    print(f"worst ratio fnlabel/distilabel: {worst:.2f}x (target <= 0.80x): {'met' if worst <= 0.8 else 'MISSED'}")
    result = {
        "benchmark": "overhead",
        "what": "microseconds per input of the composed LLM with a no-work backend (text generation, default format)",
        "clock": "time.process_time (CPU time), best of rounds x repeats",
        "inputs": args.inputs,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": rows,
        "worst_ratio": round(worst, 3),
        "target_ratio": 0.8,
        "target_met": worst <= 0.8,
        "ratios": {  # the common shape read by benchmarks/plot.py
            f"fnlabel / distilabel 0.6.0, CPU us per input, k={r['num_generations']}": {
                "value": r["ratio"],
                "target": 0.8,
                "better": "lower",
            }
            for r in rows
        }
        | {
            f"fnlabel with metadata / distilabel 0.6.0, CPU us per input, k={r['num_generations']}": {
                "value": r["metadata_ratio"],
                "better": "lower",
            }
            for r in rows
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
