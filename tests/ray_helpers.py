"""Test-only backend kinds for the Ray tests (pickled to Ray actors, so they live in an importable module).

``LlamaTestConfig`` drives llama.cpp on the embedded model directly: the fnlabel
llama-cpp backend is written on another branch; once merged, the llama.cpp test
can use ``kind = "llama-cpp"`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from fnlabel.errors import BackendError
from fnlabel.types import GenerationParams


@attrs.frozen
class LlamaTestConfig:
    """llama.cpp on a GGUF file, one completion per generation, seeded per generation."""

    model_path: str
    n_threads: int = 1

    kind: ClassVar[str] = "llama-test"

    def build(self) -> Any:
        from llama_cpp import Llama

        model = Llama(model_path=self.model_path, n_ctx=512, n_threads=self.n_threads, seed=0, verbose=False)
        return _Llama(model, self.model_path)


@attrs.define
class _Llama:
    model: Any
    model_name: str
    prompt_format: str = "chatml"

    def __call__(self, prompts: Sequence[str], params: GenerationParams) -> list[list[str]]:
        out = []
        for prompt in prompts:
            gens = []
            for i in range(params.num_generations):
                self.model.reset()  # no KV cache state carried between calls: each is computed alike
                res = self.model.create_completion(
                    prompt, max_tokens=params.max_new_tokens, temperature=params.temperature,
                    top_p=params.top_p, seed=(params.seed or 0) + i,
                )
                gens.append(res["choices"][0]["text"])
            out.append(gens)
        return out


@attrs.frozen
class BrokenConfig:
    """A backend whose model cannot load (raises in ``build``, as a missing model file would)."""

    model: str = "missing.gguf"

    kind: ClassVar[str] = "broken"

    def build(self) -> Any:
        raise BackendError(f"cannot load model {self.model!r}: no such file")
