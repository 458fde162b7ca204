"""HTTP servers for tests and benchmarks (helpers, not tests).

- :class:`FaultServer`: an OpenAI-compatible server (``/v1/completions``,
  ``/v1/chat/completions``, ``/v1/models``) that injects faults per prompt.
- :class:`LlamaCppServer` / :func:`shared_llama_server`: a real llama.cpp server (embedded model).
- :class:`TGIServer`: the TGI protocol (``/generate`` and ``/`` for
  text_generation, ``/v1/chat/completions``) with the same fault script.

Both run an aiohttp app on 127.0.0.1 (a free port) in a thread, record each
request, and answer deterministic texts that echo the prompt, the choice index
and the seed, so tests can tell rows and generations apart::

    with FaultServer(script={"flaky": [Fault.rate_limit(0.2), Fault.error(500)]}) as srv:
        client_url = srv.url            # http://127.0.0.1:PORT/v1
        ...
        srv.count("flaky")              # requests whose prompt contains "flaky"

``python -m tests.servers --latency 0.1`` runs a FaultServer in the foreground
and prints its URL (used by the benchmarks).
"""

from tests.servers.base import Fault, Seen
from tests.servers.batch import BatchServer
from tests.servers.llama_cpp import LlamaCppServer, shared_llama_server
from tests.servers.openai_fault import FaultServer
from tests.servers.tgi import TGIServer

__all__ = ["BatchServer", "Fault", "FaultServer", "LlamaCppServer", "Seen", "TGIServer", "shared_llama_server"]
