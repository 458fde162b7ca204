"""Recipes on a multi-node Ray cluster: scaling with replicas, and Ray's overhead relative to a local run.

A real cluster on this machine, started with ``ray start`` (tests/ray_cluster.py): a head node and
two worker nodes, each worker with 2 CPUs and the custom resource ``replica = 2``; the recipes
pin their replicas to the workers (``resources = {replica = 1}``). Side by side in one run:

  http:    the openai backend against a local OpenAI-compatible server with 100 ms latency per
           request (a subprocess, ``python -m tests.servers``): a local run, Ray with 1 replica,
           Ray with 2 nodes x 2 replicas. The issue's goal: 2 x 2 >= 1.8x one replica (steady rows/s).
  no-work: the echo backend without latency (the machinery is all there is): local run vs Ray
           with 1 replica, microseconds per row.

Each run is timed two ways: ``wall`` (the whole call, including the start of the replicas) and
``steady`` (rows per second from the first written batch to the last), since a real run is long
enough for the start-up to vanish. Every Ray run's output is compared with the local run's.

Run: python benchmarks/ray_bench.py [--rows 2400] [--rounds 2]   (needs pip install 'fnlabel[ray]')
Writes benchmarks/results/ray.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from benchmarks.openai_bench import MODEL, start_server
from fnlabel.recipes import loads_recipe
from fnlabel.run import resolve_options, run_recipe
from fnlabel.run.ray import on_ray
from tests.ray_cluster import Cluster

HTTP = """
[task]
kind = "text-generation"
[backend]
kind = "openai"
model = "{model}"
base_url = "{url}"
max_concurrency = {batch}
[params]
max_new_tokens = 16
seed = 1
[run]
batch_size = {batch}
num_cpus = 0.5
resources = {{ replica = 1 }}
"""

ECHO = """
[task]
kind = "text-generation"
[backend]
kind = "echo"
[params]
max_new_tokens = 32
[run]
num_generations = 2
batch_size = {batch}
num_cpus = 0.5
resources = {{ replica = 1 }}
"""


class Clock:
    """A progress callback that notes when the first and the last batch were written."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] = (self.start, 0)

    def __call__(self, progress) -> None:  # type: ignore[no-untyped-def]
        if progress.rows_done:
            now = time.perf_counter()
            self.first = self.first or (now, progress.rows_done)
            self.last = (now, progress.rows_done)

    def result(self) -> dict[str, float]:
        end, done = self.last
        first_t, first_n = self.first or (end, done)
        steady = (done - first_n) / (end - first_t) if end > first_t else float("nan")
        return {"wall_s": round(end - self.start, 3), "steady_rows_per_s": round(steady, 1)}


def timed(recipe, src: Path, out: Path, replicas: int | None) -> dict[str, float]:
    """One run: local (``replicas`` None) or on the cluster with that many replicas."""
    clock = Clock()
    if replicas is None:
        run_recipe(recipe, resolve_options(recipe, input=str(src), output=str(out)), progress=clock, cache=None)
    else:
        on_ray(recipe, out, input=str(src), replicas=replicas, progress=clock)
    return clock.result()


def compare(recipe, src: Path, tmp: Path, name: str, runs: dict[str, int | None], rounds: int) -> dict:
    """Every run in ``runs`` ``rounds`` times (order alternating), outputs checked against the local one."""
    times: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for key in order:
            out = tmp / f"{name}-{key}-{r}.jsonl"
            times[key].append(timed(recipe, src, out, runs[key]))
            print(f"{name} {key} round {r + 1}: {times[key][-1]}", flush=True)
    texts = {(tmp / f"{name}-{key}-{r}.jsonl").read_text() for key in runs for r in range(rounds)}
    assert len(texts) == 1, f"{name}: the runs wrote different outputs"
    return {
        key: {
            "steady_rows_per_s": statistics.median(t["steady_rows_per_s"] for t in ts),
            "wall_s": statistics.median(t["wall_s"] for t in ts),
            "all": ts,
        }
        for key, ts in times.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2400, help="rows of the http comparison")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray

    tmp = Path(tempfile.mkdtemp())
    src = tmp / "in.jsonl"
    t0 = time.perf_counter()
    os.environ["RAY_AUTH_MODE"] = "disabled"  # (a loopback-only cluster)
    cluster = Cluster(head_cpus=1)
    server, url = start_server(0.1)
    try:
        for n in (1, 2):
            cluster.add_worker(n, cpus=2, resources={"replica": 2})
        ray.init(address=cluster.address, logging_level=logging.ERROR)
        start_s = time.perf_counter() - t0
        results: dict[str, object] = {"cluster": "head (1 CPU) + 2 worker nodes (2 CPUs, replica=2 each)"}
        results["cluster_start_s"] = round(start_s, 1)

        batch = 8
        src.write_text("".join(json.dumps({"id": i, "input": f"question {i}"}) + "\n" for i in range(args.rows)))
        recipe = loads_recipe(HTTP.format(model=MODEL, url=url, batch=batch))
        http = compare(recipe, src, tmp, "http", {"local": None, "ray_1": 1, "ray_2x2": 4}, args.rounds)
        results["http"] = {
            "rows": args.rows,
            "batch_size": batch,
            "server_latency_s": 0.1,
            **http,
            "steady_ratio_2x2_over_1_replica": round(
                http["ray_2x2"]["steady_rows_per_s"] / http["ray_1"]["steady_rows_per_s"], 3
            ),
        }

        rows, batch = 20000, 16
        src.write_text(
            "".join(json.dumps({"id": i, "input": f"question {i} " + "word " * 20}) + "\n" for i in range(rows))
        )
        recipe = loads_recipe(ECHO.format(batch=batch))
        nowork = compare(recipe, src, tmp, "nowork", {"local": None, "ray_1": 1}, args.rounds)
        local_us = 1e6 / nowork["local"]["steady_rows_per_s"]
        ray_us = 1e6 / nowork["ray_1"]["steady_rows_per_s"]
        results["no_work"] = {
            "rows": rows,
            "batch_size": batch,
            **nowork,
            "steady_us_per_row_local": round(local_us, 1),
            "steady_us_per_row_ray": round(ray_us, 1),
            "steady_ratio_ray_over_local": round(ray_us / local_us, 3),
        }
    finally:
        ray.shutdown()
        server.terminate()
        cluster.stop()
    h, n = results["http"], results["no_work"]
    print(f"cluster start: {start_s:.1f} s")
    print(
        f"http 100 ms: 2 nodes x 2 replicas vs 1 replica, steady rows/s: x{h['steady_ratio_2x2_over_1_replica']:.2f} "  # type: ignore[index]
        f"({h['ray_2x2']['steady_rows_per_s']} vs {h['ray_1']['steady_rows_per_s']}; local {h['local']['steady_rows_per_s']})"  # type: ignore[index]
    )
    print(
        f"no work: Ray vs local, steady per row: x{n['steady_ratio_ray_over_local']:.2f} "  # type: ignore[index]
        f"({n['steady_us_per_row_ray']:.0f} vs {n['steady_us_per_row_local']:.0f} us/row)"  # type: ignore[index]
    )
    results["ratios"] = {  # the common shape read by benchmarks/plot.py
        "2 nodes x 2 replicas / 1 replica, steady rows/s, 100 ms HTTP server": {
            "value": h["steady_ratio_2x2_over_1_replica"],  # type: ignore[index]
            "target": 1.8,
            "better": "higher",
        },
        "Ray / local, steady us per row, no-work backend": {
            "value": n["steady_ratio_ray_over_local"],  # type: ignore[index]
            "better": "lower",
        },
    }
    dest = Path(__file__).resolve().parent / "results" / "ray.json"
    dest.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
