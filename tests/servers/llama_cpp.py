"""A real OpenAI-compatible server: ``python -m llama_cpp.server`` serving the embedded SmolLM2.

:func:`shared_llama_server` starts one per test process (on first use, ~10 s)
and stops it at exit, so several test modules share it.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaCppServer:
    """``with LlamaCppServer() as srv: srv.url`` (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, model: str | None = None, n_ctx: int = 2048, startup_timeout: float = 120.0) -> None:
        from fnlabel.backends.models import embedded_gguf

        self.model = model or str(embedded_gguf())
        self.n_ctx, self.startup_timeout = n_ctx, startup_timeout
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaCppServer:
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server writes to it until stop()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(
                    f"llama_cpp.server exited ({self.proc.returncode}):\n{self._log.read()[-3000:].decode()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:
                    json.load(resp)
                return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer on port {self.port} within {self.startup_timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared: LlamaCppServer | None = None


def shared_llama_server() -> LlamaCppServer:
    """One running server per process, stopped at exit."""
    global _shared
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        _shared = LlamaCppServer().start()
        atexit.register(_shared.stop)
    return _shared
