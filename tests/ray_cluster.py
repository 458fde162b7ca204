"""A real multi-node Ray cluster on this machine, for the Ray tests and benchmarks/ray_bench.py.

Each node is started the way a real cluster's are, with ``ray start`` (a head, then workers
joining it by address): separate raylets, each with its own CPUs and custom resources, so a
recipe can pin its replicas to worker nodes (``[run] resources = {replica = 1}``). Every node
gets its own block of ports, and the whole cluster its own ``--temp-dir``, so a cluster never
meets another Ray on the machine; :meth:`Cluster.stop` kills exactly the processes of this
cluster (``ray stop`` would stop every Ray of the user). Failure detection is made fast
(a dead node is noticed in about 2.5 s instead of 15 s) with Ray's health-check settings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))

#: fast failure detection: a node that misses 3 health checks 1 s apart is dead (about 2.5 s after
#: its raylet is killed, against 15 s by default); shorter periods risk a busy 2-core machine's
#: healthy raylet being declared dead
FAST_HEALTH = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}
_PORTS = 10  # ports of one node (and 100 worker ports each, above the cluster's block)


def _free_block(size: int) -> int:
    """A base port with ``size`` free ports above it."""
    for base in range(21000 + (os.getpid() % 200) * 150, 60000, 1500):
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports for a Ray cluster")


class Cluster:
    """A head node and worker nodes started with ``ray start``; ``address`` is the head's GCS."""

    def __init__(self, head_cpus: float = 1, head_resources: dict[str, float] | None = None) -> None:
        self.base = _free_block(1000)
        self.temp = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))  # (short: Ray's socket paths are limited)
        self.address = f"127.0.0.1:{self.base}"
        self.env = {
            **os.environ,
            **FAST_HEALTH,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",  # (a loopback-only test cluster)
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("RAY_ADDRESS", None)
        self.workers: dict[int, int] = {}  # worker number -> its node manager port
        self._start(0, ["--head", f"--port={self.base}", "--include-dashboard=false"], head_cpus, head_resources)

    def _ports(self, n: int) -> list[str]:
        o = self.base + _PORTS * (n + 1)
        w = self.base + 100 * (n + 1)
        names = [
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-grpc-port",
            "dashboard-agent-listen-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        ]
        ports = [f"--{name}={o + i}" for i, name in enumerate(names)]
        if n == 0:
            ports += [f"--ray-client-server-port={o + 7}", f"--dashboard-port={o + 8}"]
        return [*ports, f"--min-worker-port={w}", f"--max-worker-port={w + 99}"]

    def _start(self, n: int, role: list[str], cpus: float, resources: dict[str, float] | None) -> None:
        cmd = [
            RAY,
            "start",
            *role,
            f"--temp-dir={self.temp}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus:g}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            "--include-log-monitor=false",
            f"--resources={json.dumps(resources or {})}",
            *self._ports(n),
        ]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({proc.returncode}): {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def add_worker(self, n: int, cpus: float = 1, resources: dict[str, float] | None = None) -> None:
        """Start worker node ``n`` (1, 2, ...), joined to the head."""
        self._start(n, [f"--address={self.address}"], cpus, resources)
        self.workers[n] = self.base + _PORTS * (n + 1)
        self.wait_nodes()

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: those naming its temp dir or its head's address (the client
        server), and their children."""
        mark, head = str(self.temp), f":{self.base}"
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            args = proc.info["cmdline"] or []
            if any(mark in a or (a.startswith("--address=") and a.endswith(head)) for a in args):
                found[proc.pid] = proc
                try:
                    found.update((c.pid, c) for c in proc.children(recursive=True))
                except psutil.Error:
                    pass
        return list(found.values())

    def raylet(self, n: int) -> psutil.Process:
        """The raylet process of worker node ``n``."""
        mark = f"--node_manager_port={self.workers[n]}"
        for proc in psutil.process_iter(["cmdline"]):
            args = proc.info["cmdline"] or []
            if args and args[0].endswith("raylet") and mark in args:
                return proc
        raise LookupError(f"no raylet for worker node {n}")

    def kill_worker(self, n: int) -> None:
        """``kill -9`` the raylet of worker node ``n`` (its workers die with it), as a lost machine would."""
        raylet = self.raylet(n)
        children = raylet.children(recursive=True)
        raylet.send_signal(signal.SIGKILL)
        del self.workers[n]
        psutil.wait_procs(children, timeout=20)

    def alive_nodes(self) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _COUNT, self.address], env=self.env, capture_output=True, text=True, timeout=120
        )
        return int(out.stdout.strip().splitlines()[-1])

    def wait_nodes(self, timeout: float = 60) -> None:
        """Wait until the head and every worker started are alive in the cluster's view."""
        want, deadline = 1 + len(self.workers), time.monotonic() + timeout
        while self.alive_nodes() != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster has not {want} live nodes after {timeout} s")
            time.sleep(0.5)

    def stop(self) -> None:
        """Kill every process of this cluster (SIGTERM, then SIGKILL what is left)."""
        procs = self.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                try:
                    proc.send_signal(sig)
                except psutil.Error:
                    pass
            _gone, procs = psutil.wait_procs(procs, timeout=3 if sig == signal.SIGTERM else 10)
            if not procs:
                break
        shutil.rmtree(self.temp, ignore_errors=True)  # (the session's logs and sockets)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_COUNT = """
import logging, sys, ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
print(sum(1 for n in ray.nodes() if n["Alive"]))
"""
