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
  makes half of every input's generations (each with its own
  ``max_concurrency=64``, so twice the requests in flight);
* ``pooled2_same_total_concurrency``: the same with ``max_concurrency=32`` per
  member, so only the second client process differs from ``one``.

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

import fnlabel
from fnlabel import (
    GenerationParams,
    LLMSpec,
    in_process,
    pooled,
    tasks,
)

RESULTS = ROOT / "benchmarks" / "results" / "pool_bench.json"
RATIO_NAMES = {"pooled2": "2 members", "pooled2_same_total_concurrency": "2 members, same total concurrency"}


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
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "bench"),
                "choices": choices,
                "usage": usage(),
            }
        )

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        await _sleep(latency)
        n = int(body.get("n") or 1)
        choices = [{"index": i, "text": text, "finish_reason": "stop", "logprobs": None} for i in range(n)]
        return web.json_response(
            {
                "id": "cmpl-bench",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.get("model", "bench"),
                "choices": choices,
                "usage": usage(),
            }
        )

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model", "owned_by": "me"}]})

    app = web.Application()
    app.add_routes(
        [
            web.post("/v1/chat/completions", chat),
            web.post("/v1/completions", completions),
            web.get("/v1/models", models),
        ]
    )
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


def backend_config(base_url: str, latency: float, native_n: bool, max_concurrency: int = 64):
    """OpenAIConfig when the openai backend exists, else the echo backend with the same latency."""
    try:
        from fnlabel.backends.openai import OpenAIConfig
    except ImportError:
        from fnlabel.backends import EchoConfig

        return "echo", EchoConfig(model_name="bench", latency=latency)
    return "openai", OpenAIConfig(
        model="bench",
        base_url=base_url,
        api_key_env="FNLABEL_BENCH_KEY",
        max_concurrency=max_concurrency,
        native_n=native_n,
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


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by the client children (0 without psutil)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def measure(
    configs: dict[str, list[LLMSpec]], rows: list[dict], k: int, batch: int, repeats: int, workers: int
) -> dict[str, dict[str, float]]:
    """Best wall time and mean client CPU of each configuration (one spec: in_process; several: pooled)."""
    children = {name: [in_process(spec, workers=workers) for spec in specs] for name, specs in configs.items()}
    try:
        gens = {name: kids[0] if len(kids) == 1 else pooled(kids) for name, kids in children.items()}
        for gen in gens.values():  # load and warm up connections
            timed(gen, rows[:batch], k, batch)
        best = {name: float("inf") for name in configs}
        cpu = dict.fromkeys(configs, 0.0)
        for _ in range(repeats):  # interleaved, so background load hits all alike
            for name, gen in gens.items():
                pids = [kid.pid for kid in children[name]]
                before = cpu_seconds(pids)
                best[name] = min(best[name], timed(gen, rows, k, batch))
                cpu[name] += (cpu_seconds(pids) - before) / repeats
        return {name: {"wall_s": best[name], "client_cpu_s": cpu[name]} for name in configs}
    finally:
        for kids in children.values():
            for kid in kids:
                kid.close()


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
            "benchmark": "pool_bench",
            "rows": args.rows,
            "num_generations": args.k,
            "batch": args.batch,
            "workers_per_child": args.workers,
            "server_latency_s": args.latency,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "fnlabel": fnlabel.__version__,
            "runs": {},
        }
        gens = args.rows * args.k
        for native_n in (False, True):
            kind, config = backend_config(base_url, args.latency, native_n)
            _, half = backend_config(base_url, args.latency, native_n, max_concurrency=32)
            report["backend"] = kind
            spec, half_spec = LLMSpec(task, config, params), LLMSpec(task, half, params)
            configs = {"one": [spec], "pooled2": [spec, spec]}
            if kind == "openai":  # the same 64 requests in flight in total: isolates the second process
                configs["pooled2_same_total_concurrency"] = [half_spec, half_spec]
            measured = measure(configs, rows, args.k, args.batch, args.repeats, args.workers)
            one = measured["one"]["wall_s"]
            run = {
                name: {
                    "wall_s": round(m["wall_s"], 3),
                    "gen_per_s": round(gens / m["wall_s"], 1),
                    "client_cpu_s": round(m["client_cpu_s"], 3),
                    "throughput_ratio_vs_one": round(one / m["wall_s"], 2),
                }
                for name, m in measured.items()
            }
            label = f"{kind}, native_n={native_n}"
            report["runs"][label] = run
            print(
                label
                + ": "
                + ", ".join(f"{n} {r['wall_s']} s ({r['throughput_ratio_vs_one']}x)" for n, r in run.items()),
                flush=True,
            )
            if kind == "echo":
                break  # native_n means nothing to echo
    finally:
        server.terminate()
        server.wait(10)
    report["ratios"] = {  # the common shape read by benchmarks/plot.py
        f"{RATIO_NAMES.get(name, name)} / 1 member, generations/s ({label})": {
            "value": r["throughput_ratio_vs_one"],
            "better": "higher",
        }
        for label, run in report["runs"].items()
        for name, r in run.items()
        if name != "one"
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
