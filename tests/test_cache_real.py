"""The cache in front of real components: llama.cpp with the embedded model (driven by a
plain backend function) and fnlabel's OpenAI backend against a counting server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fnlabel import GenerationParams, cached, llm, tasks
from fnlabel.backends.models import embedded_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def llama_backend():
    import llama_cpp

    model = llama_cpp.Llama(model_path=str(embedded_gguf()), n_ctx=512, n_threads=2, verbose=False)
    lock = threading.Lock()
    calls: list[int] = []

    def generate(prompts, params):
        out = []
        with lock:
            calls.append(len(prompts) * params.num_generations)
            for prompt in prompts:
                gens = []
                for i in range(params.num_generations):
                    seed = None if params.seed is None else params.seed + i
                    res = model.create_completion(
                        prompt,
                        max_tokens=params.max_new_tokens,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        seed=seed,
                        stop=list(params.stop) or None,
                    )
                    gens.append(res["choices"][0]["text"])
                out.append(gens)
        return out

    generate.cache_identity = "llama.cpp:SmolLM2-135M-Instruct.Q4_1"
    generate.model_name = "smollm2"
    generate.calls = calls
    return generate


def test_cached_llama_cpp_rerun_is_identical_with_zero_calls(llama_backend, tmp_path):
    params = GenerationParams(max_new_tokens=8, temperature=1.0)  # unseeded sampling: reruns would differ
    rows = [{"input": "Name a colour."}, {"input": "Name a fruit."}]
    gen = cached(
        llm(tasks.text_generation(system_prompt=""), llama_backend, params, prompt_format="chatml"),
        tmp_path / "c.sqlite",
    )
    llama_backend.calls.clear()
    first = gen(rows, 2)
    assert llama_backend.calls == [4]
    assert all(isinstance(o["raw_output"], str) for row in first for o in row)
    assert gen(rows, 2) == first
    assert gen(rows, 3)[0][:2] == first[0] and llama_backend.calls == [4, 2]


# --- fnlabel's OpenAI backend against a counting OpenAI-compatible server -----------------


class _Counter:
    def __init__(self) -> None:
        self.choices = 0
        self.lock = threading.Lock()


def _server(counter: _Counter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": "counting", "object": "model", "owned_by": "test"}]})

        def do_POST(self) -> None:
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            n = int(req.get("n") or 1)
            with counter.lock:
                counter.choices += n
                serial = counter.choices
            chat = "messages" in req
            text = req["messages"][-1]["content"] if chat else req["prompt"]
            choices = []
            for i in range(n):
                content = f"reply {serial}-{i} to {text}"
                choice = {"index": i, "finish_reason": "stop", "logprobs": None}
                choice.update({"message": {"role": "assistant", "content": content}} if chat else {"text": content})
                choices.append(choice)
            self._send(
                {
                    "id": f"x{serial}",
                    "object": "chat.completion" if chat else "text_completion",
                    "created": 0,
                    "model": req.get("model", "counting"),
                    "choices": choices,
                    "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": 1 + n},
                }
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_cached_openai_backend_counts_requests_on_a_real_server(tmp_path, monkeypatch):
    import fnlabel.backends.openai as openai_backend

    counter = _Counter()
    server = _server(counter)
    try:
        monkeypatch.setenv("FNLABEL_TEST_KEY", "sk-test")
        backend = openai_backend.OpenAIConfig(
            model="counting",
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
            api_key_env="FNLABEL_TEST_KEY",
        ).build()
        rows = [{"input": f"q{i}"} for i in range(3)]
        gen = cached(llm(tasks.text_generation(), backend), tmp_path / "c.sqlite")
        first = gen(rows, 4)
        assert counter.choices == 12
        assert gen(rows, 4) == first and counter.choices == 12  # a rerun makes 0 calls
        eight = gen(rows, 8)
        assert counter.choices == 12 + 3 * 4  # n=4 -> n=8: 4 new generations per row
        assert [row[:4] for row in eight] == first
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    finally:
        server.shutdown()


def test_cached_openai_backend_through_the_fault_server(tmp_path, monkeypatch):
    """Faults retried, n ignored by the server: a rerun makes 0 requests, n=4 -> 8 makes 4 per row."""
    from fnlabel.backends.openai import OpenAIConfig
    from tests.servers import Fault, FaultServer

    monkeypatch.setenv("FNLABEL_TEST_KEY", "sk-test")
    script = {"flaky": [Fault.error(500), Fault.rate_limit(0.05), Fault.malformed()]}
    with FaultServer(script=script, ignore_n=True) as srv:
        backend = OpenAIConfig(
            model="fault-model", base_url=srv.url, api_key_env="FNLABEL_TEST_KEY", backoff=0.01, max_backoff=0.2
        ).build()
        rows = [{"input": "q0"}, {"input": "flaky q1"}, {"input": "q2"}]
        gen = cached(llm(tasks.text_generation(system_prompt=""), backend), tmp_path / "c.sqlite")
        ok = lambda: sum(s.fault == "ok" for s in srv.requests)
        first = gen.run(rows, 4)
        assert not first.failures and all(o["raw_output"] for row in first.outputs for o in row)
        assert ok() == 12 and srv.count("flaky") > 4  # one answer per request; the faults were retried
        before = len(srv.requests)
        assert gen(rows, 4) == first.outputs and len(srv.requests) == before  # a rerun makes 0 requests
        eight = gen(rows, 8)
        assert ok() == 12 + 3 * 4  # n=4 -> n=8: exactly 4 new generations per row
        assert [row[:4] for row in eight] == first.outputs
        backend.close()
