"""Rate budgets against a local server that answers 429 above its limits (tests/servers/limited.py).

The server allows 40 requests (or 2,000 tokens) per sliding 2-second window, i.e. 1,200
requests or 60,000 tokens per minute, charging a request on arrival with the estimate
OpenAI's limiter uses (prompt characters / 4 + max_tokens) and then with its reported usage.
Side by side, in one run, against the same server:

- fnlabel with ``max_requests_per_minute = 1200`` (or ``max_tokens_per_minute = 60000``);
- fnlabel with no budget: only the server's ``x-ratelimit-*`` headers and 429s to go by;
- the raw async SDK: ``AsyncOpenAI`` + a semaphore of 16, its own retries (which honour
  ``Retry-After``) raised to 8 — what a user of the SDK writes.

For each: the 429s the server sent and the rate reached as a share of the allowed rate
(requests/s, or reported tokens/s, between the first and the last admitted request).
Targets: 0 429s and >= 0.9x the allowed rate with a budget. Writes
benchmarks/results/ratelimit.json.

    python benchmarks/ratelimit_bench.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fnlabel
from fnlabel.backends.openai import openai
from tests.servers.limited import LimitedServer

WINDOW = 2.0
REQUESTS, TOKENS = 40, 2000  # per window: 20 requests/s, 1,000 tokens/s
PARAMS = fnlabel.GenerationParams(max_new_tokens=16, temperature=0.0)


def rows(n: int) -> list[dict[str, str]]:
    return [{"input": f"question number {i}"} for i in range(n)]


def fnlabel_run(srv: LimitedServer, n: int, **budget: Any) -> None:
    task = fnlabel.tasks.text_generation(system_prompt="")
    backend = openai(model="m", base_url=srv.url, max_concurrency=16, backoff=0.05, max_retries=8, **budget)
    with fnlabel.llm(task, backend, PARAMS) as gen:
        out = gen(rows(n))
    assert all(o[0]["raw_output"] for o in out)


def sdk_run(srv: LimitedServer, n: int) -> None:
    from openai import AsyncOpenAI, DefaultAioHttpClient

    async def main() -> None:
        client = AsyncOpenAI(api_key="sk-bench", base_url=srv.url, max_retries=8, http_client=DefaultAioHttpClient())
        gate = asyncio.Semaphore(16)

        async def one(row: dict[str, str]) -> str:
            async with gate:
                r = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": row["input"]}], max_tokens=16, temperature=0
                )
                return r.choices[0].message.content or ""

        out = await asyncio.gather(*(one(r) for r in rows(n)))
        await client.close()
        assert all(out)

    asyncio.run(main())


def measure(kind: str, n: int, run: Any) -> dict[str, Any]:
    limits = {"requests": REQUESTS} if kind == "requests" else {"tokens": TOKENS}
    with LimitedServer(window=WINDOW, latency=0.01, **limits) as srv:
        run(srv, n)
    span = srv.last - srv.first
    if kind == "requests":
        reached = (srv.admitted - 1) / span / (REQUESTS / WINDOW)
    else:
        reached = srv.charged / span / (TOKENS / WINDOW)
    return {"rejected_429": srv.rejected, "admitted": srv.admitted, "share_of_allowed_rate": round(reached, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ratelimit.json"))
    args = ap.parse_args()
    n = args.requests
    results: dict[str, dict[str, Any]] = {}
    clients = {
        "requests": {
            "fnlabel, max_requests_per_minute=1200": lambda s, k: fnlabel_run(s, k, max_requests_per_minute=1200),
            "fnlabel, no budget (headers only)": fnlabel_run,
            "raw async SDK, its own retries": sdk_run,
        },
        "tokens": {
            "fnlabel, max_tokens_per_minute=60000": lambda s, k: fnlabel_run(s, k, max_tokens_per_minute=60000),
            "fnlabel, no budget (headers only)": fnlabel_run,
            "raw async SDK, its own retries": sdk_run,
        },
    }
    for kind, runs in clients.items():
        count = n if kind == "requests" else 3 * n  # a token-limited request is small: more of them
        for name, run in runs.items():
            results[f"{kind}: {name}"] = figure = measure(kind, count, run)
            print(f"{kind:8} {name:42} {figure['rejected_429']:5} 429s  {figure['share_of_allowed_rate']:.2f}x allowed")
    req = results["requests: fnlabel, max_requests_per_minute=1200"]
    tok = results["tokens: fnlabel, max_tokens_per_minute=60000"]
    out = {
        "benchmark": "ratelimit",
        "what": "429s and share of the allowed rate against a local server limiting requests or tokens per window",
        "server": f"{REQUESTS} requests or {TOKENS} tokens per sliding {WINDOW:g} s window, 10 ms latency",
        "requests": n,
        "python": platform.python_version(),
        "results": results,
        "ratios": {  # the common shape read by benchmarks/plot.py
            "request budget: requests/s reached / allowed (0 429s)": {
                "value": req["share_of_allowed_rate"],
                "target": 0.9,
                "better": "higher",
            },
            "token budget: tokens/s reached / allowed (0 429s)": {
                "value": tok["share_of_allowed_rate"],
                "target": 0.9,
                "better": "higher",
            },
        },
        "target_met": req["rejected_429"] == 0
        and tok["rejected_429"] == 0
        and min(req["share_of_allowed_rate"], tok["share_of_allowed_rate"]) >= 0.9,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"targets (0 429s, >= 0.9x allowed) {'met' if out['target_met'] else 'MISSED'}; wrote {args.out}")


if __name__ == "__main__":
    main()
