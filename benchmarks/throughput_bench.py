"""The HTTP client at the limit: requests/s and client CPU per request at 64, 256 and 1,024 in flight.

Against one local OpenAI-compatible server with 100 ms latency (a subprocess: ``python -m
tests.servers``), rounds alternating, each client sends ``--per-slot`` x concurrency chat requests:

- fnlabel: the whole LLM call, ``llm(text_generation(), openai(max_concurrency=c))``;
- bare aiohttp: the same requests with a semaphore of c and a connector of c connections, no SDK,
  ``json.loads`` of the answer: the practical ceiling of this server and machine.

Then ``fnlabel run`` (the runner: input read, rows written in order) at 1,024 in flight with
``[run] processes = 1`` and ``= 2``: rows/s, and whether both write the same output.

Last, the client's own CPU per request with the network taken out: both clients' aiohttp session
replaced by one that answers every POST at once with a canned completion (each client in a fresh
process, 20,000 requests at 1,024 in flight, best of 9 rounds): what fnlabel's hot path costs on
top of the bare client's, whatever the server.
The issue's goals: fnlabel >= 0.9x bare aiohttp at 256 and 1,024 in flight, client CPU per
request <= 1.5x the bare client's.

    python benchmarks/throughput_bench.py [--per-slot 8] [--rounds 3] [--rows 20000] [--canned 20000]

Writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import openai_bench
from benchmarks.openai_bench import MODEL, SYSTEM, start_server

LATENCY = 0.1
LEVELS = (64, 256, 1024)


def bench_fnlabel(url: str, n: int, c: int) -> tuple[float, float]:
    return openai_bench.bench_fnlabel(url, n, c, concurrency=c)


def bench_bare(url: str, n: int, c: int) -> tuple[float, float]:
    return openai_bench.bench_bare_aiohttp(url, n, c, concurrency=c)


def levels(url: str, per_slot: int, rounds: int) -> dict:
    out = {}
    for c in LEVELS:
        n = c * per_slot
        rates: dict[str, list[float]] = {"fnlabel": [], "bare_aiohttp": []}
        cpu: dict[str, list[float]] = {"fnlabel": [], "bare_aiohttp": []}
        for r in range(rounds):
            order = [("fnlabel", bench_fnlabel), ("bare_aiohttp", bench_bare)]
            for name, fn in order if r % 2 == 0 else reversed(order):
                seconds, cpu_s = fn(url, n, c)
                rates[name].append(n / seconds)
                cpu[name].append(1000 * cpu_s / n)
                print(
                    f"{c:5d} in flight, round {r + 1}: {name:13s} {n / seconds:8.1f} req/s "
                    f"{1000 * cpu_s / n:6.3f} ms CPU/req",
                    flush=True,
                )
        rate = {k: statistics.median(v) for k, v in rates.items()}
        ms = {k: statistics.median(v) for k, v in cpu.items()}
        out[str(c)] = {
            "requests": n,
            "requests_per_s_median": {k: round(v, 1) for k, v in rate.items()},
            "requests_per_s_all": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            "client_cpu_ms_per_request_median": {k: round(v, 3) for k, v in ms.items()},
            "ratio_fnlabel_vs_bare": round(rate["fnlabel"] / rate["bare_aiohttp"], 3),
            "cpu_ratio_fnlabel_vs_bare": round(ms["fnlabel"] / ms["bare_aiohttp"], 3),
        }
    return out


def processes(url: str, rows: int, rounds: int) -> dict:
    from fnlabel.recipes import loads_recipe
    from fnlabel.run import resolve_options, run_recipe

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "in.jsonl"
    data.write_text("".join(json.dumps({"input": f"question {i}"}) + "\n" for i in range(rows)))
    rates: dict[int, list[float]] = {1: [], 2: []}
    texts: dict[int, str] = {}
    for r in range(rounds):
        for n in (1, 2) if r % 2 == 0 else (2, 1):
            recipe = loads_recipe(
                f'[task]\nkind = "text-generation"\nsystem_prompt = "{SYSTEM}"\n'
                f'[backend]\nkind = "openai"\nmodel = "{MODEL}"\nbase_url = "{url}"\nmax_concurrency = 1024\n'
                f"[params]\nmax_new_tokens = 16\nseed = 1\n[run]\nbatch_size = 64\nprocesses = {n}\n"
            )
            out = tmp / f"out-{n}-{r}.jsonl"
            start = time.perf_counter()
            summary = run_recipe(recipe, resolve_options(recipe, input=str(data), output=str(out)))
            seconds = time.perf_counter() - start
            assert summary.rows_done == rows and not summary.failed_rows
            rates[n].append(rows / seconds)
            texts[n] = out.read_text()
            print(f"fnlabel run, processes = {n}, round {r + 1}: {rows / seconds:8.1f} rows/s", flush=True)
    median = {n: statistics.median(v) for n, v in rates.items()}
    return {
        "rows": rows,
        "in_flight": 1024,
        "rows_per_s_median": {f"processes={n}": round(v, 1) for n, v in median.items()},
        "rows_per_s_all": {f"processes={n}": [round(x, 1) for x in v] for n, v in rates.items()},
        "ratio_2_vs_1": round(median[2] / median[1], 3),
        "same_output": texts[1] == texts[2],
    }


CANNED = json.dumps(
    {
        "id": "c",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "a canned answer"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
    }
).encode()


class CannedResponse:
    """What ``aiohttp.ClientSession.post`` gives, answered at once (one event-loop turn)."""

    status, headers = 200, {}  # type: ignore[var-annotated]

    async def __aenter__(self) -> CannedResponse:
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def read(self) -> bytes:
        return CANNED


class CannedSession:
    def post(self, url: str, **options: object) -> CannedResponse:
        if "json" in options:  # what aiohttp does with json=: the body is encoded either way
            json.dumps(options["json"]).encode()
        return CannedResponse()

    async def close(self) -> None:
        pass


def canned_child(client: str, n: int, rounds: int) -> list[float]:
    """Client CPU microseconds per request, per round, with canned answers (run in its own process)."""
    import gc

    from fnlabel import GenerationParams, llm, tasks
    from fnlabel.backends.openai import openai

    out = []
    if client == "fnlabel":
        backend = openai(model=MODEL, base_url="http://127.0.0.1:9/v1", max_concurrency=1024)
        gen = llm(tasks.text_generation(system_prompt=SYSTEM), backend, GenerationParams(max_new_tokens=16))
        backend._loop._start()  # the session is made on the backend's loop: swap in the canned one
        client = backend._loop.state.client
        backend._loop.run(client.session.close())
        client.session = CannedSession()
        for _ in range(rounds):
            gc.collect()
            rows = [{"input": f"question {i}"} for i in range(n)]
            cpu = time.process_time()
            result = gen.run(rows)
            out.append(1e6 * (time.process_time() - cpu) / n)
            assert len(result.outputs) == n and not result.failures
            del result
        return out

    async def bare() -> float:
        session, semaphore = CannedSession(), asyncio.Semaphore(1024)

        async def one(i: int) -> str:
            body = {"model": MODEL, "max_tokens": 16, "messages": openai_bench._messages(i)}
            async with semaphore, session.post("/chat/completions", json=body, headers={"Authorization": "x"}) as r:
                return json.loads(await r.read())["choices"][0]["message"]["content"]

        cpu = time.process_time()
        await asyncio.gather(*(one(i) for i in range(n)))
        return 1e6 * (time.process_time() - cpu) / n

    for _ in range(rounds):
        gc.collect()
        out.append(asyncio.run(bare()))
    return out


def canned(n: int, rounds: int = 9) -> dict:
    best = {}
    for client in ("fnlabel", "bare_aiohttp"):
        line = (
            subprocess.run(
                [sys.executable, __file__, "--canned-child", client, "--canned", str(n), "--rounds", str(rounds)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        per_round = json.loads(line)
        best[client] = min(per_round)
        print(f"canned answers: {client:13s} {best[client]:6.1f} us CPU/request (best of {rounds})", flush=True)
    return {
        "requests": n,
        "in_flight": 1024,
        "client_cpu_us_per_request_best": {k: round(v, 1) for k, v in best.items()},
        "cpu_ratio_fnlabel_vs_bare": round(best["fnlabel"] / best["bare_aiohttp"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-slot", type=int, default=8, help="requests per round = this x in flight")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--canned", type=int, default=20000, help="requests per round with canned answers")
    ap.add_argument("--canned-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.canned_child:
        print(json.dumps(canned_child(args.canned_child, args.canned, args.rounds)))
        return
    proc, url = start_server(LATENCY)
    try:
        by_level = levels(url, args.per_slot, args.rounds)
        procs = processes(url, args.rows, args.rounds)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    no_network = canned(args.canned)
    result = {
        "benchmark": "openai chat requests/s and client CPU/request vs a bare aiohttp client, 100 ms server",
        "server_latency_s": LATENCY,
        "in_flight": by_level,
        "fnlabel_run_processes": procs,
        "canned_answers": no_network,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
        "load_average_at_end": list(os.getloadavg()),
        "note": "The server is one Python process on the same cores: past a few thousand requests/s it, "
        "not the client, sets the pace for both clients alike.",
    }
    result["ratios"] = {
        **{
            f"fnlabel / bare aiohttp, requests/s, {c} in flight": {
                "value": by_level[str(c)]["ratio_fnlabel_vs_bare"],
                **({"target": 0.9} if c >= 256 else {}),
                "better": "higher",
            }
            for c in LEVELS
        },
        **{
            f"fnlabel / bare aiohttp, client CPU per request, {c} in flight": {
                "value": by_level[str(c)]["cpu_ratio_fnlabel_vs_bare"],
                **({"target": 1.5} if c >= 256 else {}),
                "better": "lower",
            }
            for c in LEVELS
        },
        "fnlabel run rows/s, processes = 2 / processes = 1, 1024 in flight": {
            "value": procs["ratio_2_vs_1"],
            "better": "higher",
        },
        "fnlabel / bare aiohttp, client CPU per request, canned answers (no network)": {
            "value": no_network["cpu_ratio_fnlabel_vs_bare"],
            "better": "lower",
        },
    }
    out = ROOT / "benchmarks" / "results" / "throughput.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result["ratios"].items():
        print(f"{name}: {r['value']}x" + (f" (target {r['target']})" if "target" in r else ""))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
