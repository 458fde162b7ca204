"""pooled: two in_process OpenAI-backend members vs one, against a local 100 ms server.

The server (aiohttp, its own process) answers ``/v1/chat/completions`` and
``/v1/completions`` after a fixed latency, honouring ``n``. With a 100 ms
server and up to 64 requests in flight, the client's CPU (building,
sending and parsing requests in the OpenAI SDK) is the limit, so a second
client process should help. Both sides run in child processes (in_process),
so the ratio isolates "two client processes" from process overhead.

Configurations, measured in one run (best of ``--repeats``):

* ``one``: ``in_process(member)``;
* ``pooled2``: ``pooled([in_process(member), in_process(member)])``: each member
  makes half of every input's generations.

``native_n=False`` (one request per generation, as against servers that ignore
``n``) keeps the number of requests equal in both; ``native_n=True`` (one
``n=k`` request per input and member) makes the pool send twice as many,
smaller requests. Both are reported.

If ``fnlabel.backends.openai`` is missing, the echo backend with the same
latency is measured instead (and the JSON says so).

Usage: python benchmarks/pool_bench.py [--rows 400] [--k 2] [--latency 0.1]
Writes benchmarks/results/pool_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fnlabel  # noqa: E402
from fnlabel import GenerationParams, in_process, pooled, tasks  # noqa: E402
from fnlabel.process import LLMSpec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "pool_bench.json"


# ----------------------------------------------------------------------------- the server


def serve(port: int, latency: float) -> None:
    """An OpenAI-compatible server that answers after ``latency`` seconds (run in its own process)."""
    from aiohttp import web

    text = "A short answer from the benchmark server."

    def usage() -> dict:
        return {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await _sleep(latency)
        n = int(body.get("n") or 1)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"} for i in range(n)
        ]
        return web.json_response(
            {"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
             "model": body.get("model", "bench"), "choices": choices, "usage": usage()}
        )

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        await _sleep(latency)
        n = int(body.get("n") or 1)
        choices = [{"index": i, "text": text, "finish_reason": "stop", "logprobs": None} for i in range(n)]
        return web.json_response(
            {"id": "cmpl-bench", "object": "text_completion", "created": int(time.time()),
             "model": body.get("model", "bench"), "choices": choices, "usage": usage()}
        )

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model", "owned_by": "me"}]})

    app = web.Application()
    app.add_routes([
        web.post("/v1/chat/completions", chat),
        web.post("/v1/completions", completions),
        web.get("/v1/models", models),
    ])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(latency)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("benchmark server did not start")


# ----------------------------------------------------------------------------- the clients


def backend_config(base_url: str, latency: float, native_n: bool):
    """OpenAIConfig when the openai backend exists, else the echo backend with the same latency."""
    try:
        from fnlabel.backends.openai import OpenAIConfig
    except ImportError:
        from fnlabel.backends import EchoConfig

        return "echo", EchoConfig(model_name="bench", latency=latency)
    return "openai", OpenAIConfig(
        model="bench", base_url=base_url, api_key_env="FNLABEL_BENCH_KEY", max_concurrency=64, native_n=native_n
    )


def timed(gen, rows: list[dict], k: int, batch: int) -> float:
    """Seconds to get all outputs, with every batch submitted at once (as a labelling run does)."""
    start = time.perf_counter()
    futures = [gen.submit(rows[i : i + batch], k) for i in range(0, len(rows), batch)]
    results = [f.result() for f in futures]
    elapsed = time.perf_counter() - start
    outputs = [row for res in results for row in res.outputs]
    failures = [f for res in results for f in res.failures]
    assert len(outputs) == len(rows) and all(len(o) == k for o in outputs), "wrong output shape"
    assert not failures, failures[:3]
    return elapsed


def measure(spec: LLMSpec, rows: list[dict], k: int, batch: int, repeats: int, workers: int) -> dict[str, float]:
    one = in_process(spec, workers=workers)
    a, b = in_process(spec, workers=workers), in_process(spec, workers=workers)
    try:
        pool = pooled([a, b])  # waits for both children to load
        one.wait_ready()
        timed(one, rows[:batch], k, batch)  # warm up connections
        timed(pool, rows[:batch], k, batch)
        best = {"one": float("inf"), "pooled2": float("inf")}
        for _ in range(repeats):  # interleaved, so background load hits both alike
            best["one"] = min(best["one"], timed(one, rows, k, batch))
            best["pooled2"] = min(best["pooled2"], timed(pool, rows, k, batch))
        return best
    finally:
        for gen in (one, a, b):
            gen.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--k", type=int, default=2, help="num_generations per input")
    parser.add_argument("--batch", type=int, default=16, help="rows per submitted call")
    parser.add_argument("--workers", type=int, default=8, help="calls a child runs at once")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.latency)
        return

    server, base_url = start_server(args.latency)
    try:
        task = tasks.text_generation(system_prompt="Be brief.")
        params = GenerationParams(max_new_tokens=16, temperature=0.7)
        rows = [{"input": f"Question {i}: what is {i} + {i}?"} for i in range(args.rows)]
        report: dict = {
            "benchmark": "pool_bench", "rows": args.rows, "num_generations": args.k, "batch": args.batch,
            "workers_per_child": args.workers, "server_latency_s": args.latency, "cpus": os.cpu_count(),
            "python": platform.python_version(), "fnlabel": fnlabel.__version__, "runs": {},
        }
        for native_n in (False, True):
            kind, config = backend_config(base_url, args.latency, native_n)
            report["backend"] = kind
            spec = LLMSpec(task, config, params)
            best = measure(spec, rows, args.k, args.batch, args.repeats, args.workers)
            gens = args.rows * args.k
            run = {
                "one_s": round(best["one"], 3),
                "pooled2_s": round(best["pooled2"], 3),
                "one_gen_per_s": round(gens / best["one"], 1),
                "pooled2_gen_per_s": round(gens / best["pooled2"], 1),
                "speedup_pooled2_vs_one": round(best["one"] / best["pooled2"], 2),
            }
            name = f"{kind}, native_n={native_n}"
            report["runs"][name] = run
            print(f"{name}: one {run['one_s']} s, pooled2 {run['pooled2_s']} s -> "
                  f"pooled2/one throughput ratio {run['speedup_pooled2_vs_one']}x", flush=True)
            if kind == "echo":
                break  # native_n means nothing to echo
    finally:
        server.terminate()
        server.wait(10)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
