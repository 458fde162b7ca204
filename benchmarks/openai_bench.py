"""Requests/s at 64 in flight against a local OpenAI-compatible server with 100 ms latency.

Four clients, measured in one run against the same server (a subprocess, so
it does not share a GIL with the clients), rounds interleaved:

- fnlabel: ``llm(text_generation(), openai(max_concurrency=64))`` — the whole LLM call;
- distilabel 0.6.0: ``OpenAILLM(num_threads=64)`` in its own venv (``benchmarks/peers.py``);
- raw SDK: ``AsyncOpenAI`` + ``DefaultAioHttpClient`` + ``asyncio.Semaphore(64)`` + ``gather``
  with the typed ``chat.completions.create`` (what a user of the SDK writes);
- bare aiohttp: the same requests with no SDK at all, the practical ceiling of this
  server and machine.

Each client gets a warm-up of 64 requests, then ``--requests`` chat requests
(n=1). The ideal is 64 / 0.1 s = 640 requests/s for every client, so no
client can beat distilabel by more than 640 over distilabel's rate: the
result records that bound. A second run against a server with no latency
shows the clients' own cost, where they are bound by CPU rather than by the
wait. Prints the ratios and writes them to benchmarks/results/openai.json.

    python benchmarks/openai_bench.py [--requests 1280] [--rounds 3]
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
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peers import run_peer

CONCURRENCY = 64
LATENCY = 0.1
MODEL = "fault-model"
SYSTEM = "You are a helpful assistant."

DISTILABEL = r"""
import json, sys, time
from openai import OpenAI
from distilabel.llm import OpenAILLM
from distilabel.tasks import TextGenerationTask
url, n, warm, system = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
client = OpenAI(api_key="sk-bench", base_url=url, max_retries=6)
task = TextGenerationTask(system_prompt=system)
llm = OpenAILLM(task=task, model="fault-model", client=client, num_threads=64, max_new_tokens=16)
llm.generate([{"input": f"warm {i}"} for i in range(warm)]).result()
cpu, start = time.process_time(), time.perf_counter()
out = llm.generate([{"input": f"question {i}"} for i in range(n)]).result()
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
assert len(out) == n and all(o[0]["raw_output"] for o in out)
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "requests": n}))
"""


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers", "--latency", str(latency)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("benchmark server did not start")
    return proc, url


def bench_fnlabel(url: str, n: int, warm: int, concurrency: int = CONCURRENCY) -> tuple[float, float]:
    from fnlabel import GenerationParams, llm, tasks
    from fnlabel.backends.openai import openai

    backend = openai(model=MODEL, base_url=url, max_concurrency=concurrency)
    gen = llm(tasks.text_generation(system_prompt=SYSTEM), backend, GenerationParams(max_new_tokens=16))
    gen([{"input": f"warm {i}"} for i in range(warm)])
    cpu, start = time.process_time(), time.perf_counter()
    result = gen.run([{"input": f"question {i}"} for i in range(n)])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert not result.failures and len(result.outputs) == n
    backend.close()
    return elapsed, cpu


async def _timed(one: Any, n: int, warm: int) -> tuple[float, float]:
    """Warm up with ``warm`` calls of ``one(i)``, then time ``n`` of them at once: (seconds, CPU seconds)."""
    await asyncio.gather(*(one(i) for i in range(warm)))
    cpu, start = time.process_time(), time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(out) == n and all(out)
    return elapsed, cpu


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"question {i}"}]


def bench_raw_sdk(url: str, n: int, warm: int) -> tuple[float, float]:
    from openai import AsyncOpenAI, DefaultAioHttpClient

    async def main() -> tuple[float, float]:
        async with AsyncOpenAI(api_key="sk-bench", base_url=url, http_client=DefaultAioHttpClient()) as client:
            semaphore = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> str:
                async with semaphore:
                    r = await client.chat.completions.create(model=MODEL, max_tokens=16, messages=_messages(i))
                    return r.choices[0].message.content

            return await _timed(one, n, warm)

    return asyncio.run(main())


def bench_bare_aiohttp(url: str, n: int, warm: int, concurrency: int = CONCURRENCY) -> tuple[float, float]:
    """No SDK, no parsing beyond json.loads: the practical ceiling of this server and machine
    (a connection per request in flight)."""
    import aiohttp

    async def main() -> tuple[float, float]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            semaphore = asyncio.Semaphore(concurrency)

            async def one(i: int) -> str:
                async with (
                    semaphore,
                    session.post(
                        f"{url}/chat/completions",
                        json={"model": MODEL, "max_tokens": 16, "messages": _messages(i)},
                        headers={"Authorization": "Bearer sk-bench"},
                    ) as r,
                ):
                    return json.loads(await r.read())["choices"][0]["message"]["content"]

            return await _timed(one, n, warm)

    return asyncio.run(main())


def bench_distilabel(url: str, n: int, warm: int) -> tuple[float, float]:
    out = run_peer(DISTILABEL, url, str(n), str(warm), SYSTEM)
    return out["seconds"], out["cpu_seconds"]


def measure(latency: float, n: int, rounds: int) -> dict:
    """Every client against one server with ``latency`` seconds per request, rounds interleaved."""
    clients = {
        "fnlabel": bench_fnlabel,
        "distilabel_0.6.0": bench_distilabel,
        "raw_async_sdk": bench_raw_sdk,
        "bare_aiohttp": bench_bare_aiohttp,
    }
    rates: dict[str, list[float]] = {name: [] for name in clients}
    cpu_ms: dict[str, list[float]] = {name: [] for name in clients}
    proc, url = start_server(latency)
    try:
        for r in range(rounds):
            for name, fn in clients.items():
                seconds, cpu = fn(url, n, CONCURRENCY)
                rates[name].append(n / seconds)
                cpu_ms[name].append(1000 * cpu / n)
                print(
                    f"{1000 * latency:4.0f} ms server, round {r + 1}: {name:18s} {n / seconds:8.1f} requests/s  "
                    f"{1000 * cpu / n:6.3f} client CPU ms/request",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    median = {name: statistics.median(v) for name, v in rates.items()}
    cpu = {name: statistics.median(v) for name, v in cpu_ms.items()}
    return {
        "server_latency_s": latency,
        "ideal_requests_per_s": CONCURRENCY / latency if latency else None,
        "requests_per_s_median": {k: round(v, 1) for k, v in median.items()},
        "requests_per_s_all": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "client_cpu_ms_per_request_median": {k: round(v, 3) for k, v in cpu.items()},
        "ratio_fnlabel_vs_distilabel": round(median["fnlabel"] / median["distilabel_0.6.0"], 2),
        "ratio_fnlabel_vs_raw_sdk": round(median["fnlabel"] / median["raw_async_sdk"], 2),
        "ratio_fnlabel_vs_bare_aiohttp": round(median["fnlabel"] / median["bare_aiohttp"], 2),
        "cpu_per_request_ratio_distilabel_vs_fnlabel": round(cpu["distilabel_0.6.0"] / cpu["fnlabel"], 2),
        "cpu_per_request_ratio_raw_sdk_vs_fnlabel": round(cpu["raw_async_sdk"] / cpu["fnlabel"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load_start = list(os.getloadavg())
    slow = measure(LATENCY, args.requests, args.rounds)  # the setting
    fast = measure(0.0, args.requests, args.rounds)  # client-bound: no latency to wait out
    ratios = {  # the common shape read by benchmarks/plot.py
        "fnlabel / distilabel 0.6.0, requests/s, 100 ms server": {
            "value": slow["ratio_fnlabel_vs_distilabel"],
            "target": 3.0,
            "better": "higher",
        },
        "fnlabel / raw async SDK, requests/s, 100 ms server": {
            "value": slow["ratio_fnlabel_vs_raw_sdk"],
            "better": "higher",
        },
        "fnlabel / bare aiohttp (no SDK), requests/s, 100 ms server": {
            "value": slow["ratio_fnlabel_vs_bare_aiohttp"],
            "better": "higher",
        },
        "fnlabel / distilabel 0.6.0, requests/s, 0 ms server (client-bound)": {
            "value": fast["ratio_fnlabel_vs_distilabel"],
            "better": "higher",
        },
        "fnlabel / raw async SDK, requests/s, 0 ms server (client-bound)": {
            "value": fast["ratio_fnlabel_vs_raw_sdk"],
            "better": "higher",
        },
        "distilabel 0.6.0 / fnlabel, client CPU per request, 100 ms server": {
            "value": slow["cpu_per_request_ratio_distilabel_vs_fnlabel"],
            "better": "higher",
        },
    }
    ceiling = CONCURRENCY / LATENCY
    result = {
        "benchmark": "openai chat requests/s, 64 in flight: a server with 100 ms latency, and one with none",
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "latency_100ms": slow,
        "latency_0ms": fast,
        "best_possible_ratio_vs_distilabel_at_100ms": round(
            ceiling / slow["requests_per_s_median"]["distilabel_0.6.0"], 2
        ),
        "bare_aiohttp_vs_distilabel_at_100ms": round(
            slow["requests_per_s_median"]["bare_aiohttp"] / slow["requests_per_s_median"]["distilabel_0.6.0"], 2
        ),
        "ratios": ratios,
        "load_average_at_start": load_start,
        "load_average_at_end": list(os.getloadavg()),
        "note": (
            f"64 in flight x 100 ms caps every client at {ceiling:.0f} requests/s, so the best ratio any client "
            "can reach over distilabel there is the ceiling over distilabel's rate "
            "(best_possible_ratio_vs_distilabel_at_100ms); a bare aiohttp client without the SDK shows what this "
            "server and machine allow in practice (bare_aiohttp_vs_distilabel_at_100ms). With no latency the clients are bound by their own "
            "CPU (and the server's, on the same cores): that run shows the client cost in requests/s. "
            "Client CPU ms/request is the load-independent measure of client overhead."
        ),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
    }
    for name, r in ratios.items():
        print(f"{name}: {r['value']}x" + (f" (target >= {r['target']}x)" if "target" in r else ""))
    print(
        f"best ratio any client could reach over distilabel at 100 ms: {result['best_possible_ratio_vs_distilabel_at_100ms']}x; "
        f"bare aiohttp reached {result['bare_aiohttp_vs_distilabel_at_100ms']}x"
    )
    out = ROOT / "benchmarks" / "results" / "openai.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
