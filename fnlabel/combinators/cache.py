"""A per-sample cache: every generation is stored as it completes, and reused.

``cached(llm, store)`` wraps the backend of each plain LLM inside ``llm`` (through
``threaded`` and any combinator with ``map_inner``) in a :class:`CachedBackend`.
The cache sits at the backend seam, so what it stores is the raw output of one
generation, under:

* the backend's identity (:func:`cache_identity`: its config's kind and fields,
  secrets and fields that do not change outputs left out; the model is one of them),
* the exact prompt after formatting (string or chat messages),
* the generation params minus ``num_generations`` (the user's seed included),
* the generation index.

Consequences: a rerun makes no backend call; raising ``num_generations`` asks only
for the missing indices; changing a param, the model or the prompt only misses
the entries it changes; changing ``parse`` costs nothing (parsing runs on the
cached raw outputs). :class:`~fnlabel.types.GenerationFailure` results are never
stored, so a rerun retries them.

New generations of a seeded run get their own seed: generation indices
``offset..offset+m-1`` are asked for with ``seed = generation_seed(seed, offset)``
(the seed itself when ``offset`` is 0, so a cold cached call sends exactly what
an uncached call sends). Unseeded runs are sent unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from fnlabel import seeds
from fnlabel.backends.base import BackendBase, FunctionBackend, as_backend, canonical_json, describe_backend
from fnlabel.backends.models import cache_dir
from fnlabel.combinators.store import SQLiteStore, Store, identity_hash
from fnlabel.errors import BackendError, ConfigError
from fnlabel.llm import LLM, map_llms
from fnlabel.types import (
    Backend,
    FormattedPrompt,
    Generation,
    GenerationParams,
    OnPrompt,
    RawGeneration,
    is_llm_like,
)
from fnlabel.validators import check_int

__all__ = [
    "cached",
    "CachedBackend",
    "SQLiteStore",
    "cache_identity",
    "cache_for_run",
    "default_cache_path",
    "entry_key",
    "NEXT_TO_OUTPUT",
]

log = logging.getLogger("fnlabel")

T = TypeVar("T")

#: ``cache_for_run(path=NEXT_TO_OUTPUT)`` keeps the cache in ``<output>.cache.sqlite``
NEXT_TO_OUTPUT = "next-to-output"


def default_cache_path() -> Path:
    """``fnlabel.backends.models.cache_dir() / "cache.sqlite"`` (honours FNLABEL_CACHE_DIR and XDG_CACHE_HOME)."""
    return cache_dir() / "cache.sqlite"


def cache_identity(backend: Any) -> str:
    """A stable string naming what a backend computes (its kind and model), for cache keys.

    It is the backend's ``cache_identity`` (:class:`fnlabel.types.Backend`). For the
    built-in backends that is their config's kind and fields, minus secrets, ``*_env``
    fields and the fields named in its ``cache_ignore`` ClassVar (those that do not
    change outputs: latency, timeouts, retries, logging...). A plain-function backend
    should set a ``cache_identity`` string attribute, e.g. ``generate.cache_identity =
    "my-model-v2"`` (change it whenever the function's outputs would change); else its
    ``config`` record or its qualified name and ``model_name`` are used.

    Examples:
        >>> from fnlabel.backends import echo
        >>> cache_identity(echo(model_name="m1", latency=0.5))
        'echo:{"model_name":"m1","prompt_format":"default"}'
    """
    value = (backend if isinstance(backend, BackendBase) else FunctionBackend(backend)).cache_identity
    if not isinstance(value, str) or not value:
        raise ConfigError(f"backend {describe_backend(backend)}: cache_identity must be a non-empty string")
    return value


def params_key(params: GenerationParams) -> str:
    """The params part of a cache key: every field but ``num_generations``."""
    fields = attrs.asdict(params)
    del fields["num_generations"]
    for later in ("logprobs", "structured_output"):  # fields added later: keys of runs without them stay the same
        if fields[later] is None:
            del fields[later]
    return canonical_json(fields)


def entry_key(identity: str, prompt: FormattedPrompt, params: str) -> bytes:
    """The key of one (backend, prompt, params) entry; generation indices live under it."""
    text = canonical_json(["fnlabel-cache-1", identity, prompt, params])
    # surrogatepass: a lone surrogate (half an emoji in scraped text) is hashable; other text is unchanged
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@attrs.frozen
class CachedBackend(BackendBase):
    """A backend whose generations are read from / written to ``store``. Made by :func:`cached`."""

    backend: Backend = attrs.field(converter=as_backend)
    store: Store
    batch_size: int | None = None
    identity: str = attrs.field(default=attrs.Factory(lambda s: cache_identity(s.backend), takes_self=True))

    @property
    def model_name(self) -> str:
        return self.backend.model_name

    @property
    def prompt_format(self) -> str | None:
        return self.backend.prompt_format

    @property
    def max_concurrency(self) -> int:
        return self.backend.max_concurrency

    @property
    def cache_identity(self) -> str:
        return self.identity

    @property
    def supports_logprobs(self) -> bool:  # type: ignore[override]
        return self.backend.supports_logprobs

    @property
    def structured_outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.backend.structured_outputs

    def check_params(self, params: GenerationParams) -> None:
        self.backend.check_params(params)

    def close(self) -> None:
        """Close the backend and the store's SQLite connections (the store reopens on next use)."""
        self.backend.close()
        self.store.close()

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        return self.generate_from(prompts, params, 0)

    def generate_from(
        self,
        prompts: Sequence[FormattedPrompt],
        params: GenerationParams,
        first_generation: int,
        on_prompt: OnPrompt | None = None,
    ) -> list[list[RawGeneration]]:
        """Generation indices ``first_generation..`` of each prompt: stored ones read, missing ones made and stored.

        Each prompt's new generations are stored as soon as the backend has them (an HTTP backend: as
        its responses arrive), so a crash loses at most the requests still in flight.
        """
        first = first_generation
        k = params.num_generations
        wanted = range(first, first + k)
        pkey = params_key(params)
        keys = [entry_key(self.identity, p, pkey) for p in prompts]
        # one entry per distinct key: a prompt repeated in a call gets the same generations
        firsts: dict[bytes, int] = {}
        for j, key in enumerate(keys):
            firsts.setdefault(key, j)
        stored = self.store.get(list(firsts), first + k)
        have: dict[bytes, dict[int, RawGeneration]] = dict(stored)  # type: ignore[arg-type]
        hits = sum(1 for v in have.values() for i in v if i >= first)
        groups: dict[GenerationParams, list[tuple[bytes, list[int]]]] = {}
        asks: dict[tuple[int, int | None], GenerationParams] = {}
        for key in firsts:
            got = have.setdefault(key, {})
            missing = [i for i in wanted if i not in got]
            if missing:
                seed = None if params.seed is None else seeds.generation_seed(params.seed, missing[0])
                ask = asks.get((len(missing), seed))
                if ask is None:
                    ask = asks[len(missing), seed] = params.replace(num_generations=len(missing), seed=seed)
                groups.setdefault(ask, []).append((key, missing))
        computed = 0
        for ask, members in groups.items():
            step = self.batch_size or len(members)
            for start in range(0, len(members), step):
                batch = members[start : start + step]
                raw = self._generate(batch, [prompts[firsts[key]] for key, _ in batch], ask)
                for (key, missing), gens in zip(batch, raw):
                    have[key].update(zip(missing, gens))
                computed += len(batch) * ask.num_generations
        self.store.tally(hits, computed)
        out = [[have[key][i] for i in wanted] for key in keys]
        for j, gens in enumerate(out if on_prompt is not None else ()):
            on_prompt(j, gens)  # type: ignore[misc]
        return out

    def _generate(
        self, batch: list[tuple[bytes, list[int]]], prompts: list[FormattedPrompt], params: GenerationParams
    ) -> list[list[RawGeneration]]:
        ident = identity_hash(self.identity)
        k = params.num_generations

        def keep(j: int, gens: list[RawGeneration]) -> None:  # committed now: paid for is kept
            key, missing = batch[j]
            if isinstance(gens, list) and len(gens) == k:
                self.store.put([(key, i, t) for i, t in zip(missing, gens) if isinstance(t, str | Generation)], ident)

        raw = self.backend.generate_from(prompts, params, 0, keep)
        ok = isinstance(raw, list) and len(raw) == len(prompts)
        if ok and all(isinstance(g, list) and len(g) == k for g in raw):
            return raw
        raise BackendError(
            f"backend {describe_backend(self.backend)} broke its contract: asked for {len(prompts)} prompts x "
            f"{k} generations, got {_shape(raw)}; only the prompts it answered in full were cached"
        )


def _shape(raw: Any) -> str:
    if not isinstance(raw, list):
        return type(raw).__name__
    return "[" + ", ".join(str(len(g)) if isinstance(g, list) else type(g).__name__ for g in raw[:8]) + "]"


def as_store(store: Store | str | os.PathLike[str] | None) -> Store:
    """A store from a store (a :class:`~fnlabel.combinators.store.Store`), a file path, or ``None``
    (the default file, :func:`default_cache_path`)."""
    if store is None:
        return SQLiteStore(default_cache_path())
    if isinstance(store, (str, os.PathLike)):
        return SQLiteStore(store)
    if not isinstance(store, Store):
        raise ConfigError(f"cache store must be a SQLiteStore or a file path, got {type(store).__name__}")
    return store


def cached(llm: T, store: Store | str | os.PathLike[str] | None = None, *, batch_size: int | None = None) -> T:
    """The same LLM, with every generation cached in ``store`` and reused on later calls.

    Works on a plain LLM and through wrappers with ``map_inner`` (``threaded``,
    ``pooled``). For ``in_process``, build the cached LLM in the spec that runs in
    the child: the store pickles as its path and each process opens the file itself.

    Args:
        llm: the LLM to cache.
        store: a :class:`SQLiteStore`, a file path, or ``None`` for
            :func:`default_cache_path`.
        batch_size: send at most this many prompts per backend call, so results are
            committed more often (default: as many as the call holds).

    Examples:
        >>> import os, tempfile
        >>> from fnlabel import llm, tasks, backends
        >>> gen = cached(llm(tasks.text_generation(), backends.echo()), os.path.join(tempfile.mkdtemp(), "c.sqlite"))
        >>> gen([{"input": "hi"}], num_generations=2) == gen([{"input": "hi"}], num_generations=2)
        True
    """
    check_int(batch_size, "batch_size", low=1, optional=True)
    if not is_llm_like(llm):
        raise ConfigError(
            f"cannot cache {type(llm).__name__}: it is not an LLM (see fnlabel.types.LLMLike); apply cached() "
            "to an LLM made by fnlabel.llm(...), before wrapping it"
        )
    st = as_store(store)

    def wrap(member: LLM) -> LLM:
        backend = member.backend
        if isinstance(backend, CachedBackend):  # re-caching replaces the store, never nests
            backend = backend.backend
        return attrs.evolve(member, backend=CachedBackend(backend, st, batch_size))

    fix = "apply cached() to the LLM before wrapping it (for in_process, build the cached LLM in the spec)"
    return map_llms(llm, wrap, "cache", fix)  # type: ignore[no-any-return]


def cache_for_run(
    output_path: str | os.PathLike[str] | None,
    enabled: bool = True,
    path: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> SQLiteStore | None:
    """The store ``fnlabel run`` uses: ``None`` when disabled (``--no-cache``).

    ``path`` is a file, :data:`NEXT_TO_OUTPUT` (``<output>.cache.sqlite``), or
    ``None`` for :func:`default_cache_path`; when the default cache folder cannot
    be written, the file goes next to the output instead, with a warning passed to
    ``warn`` (default: fnlabel's logger).

    Examples:
        >>> cache_for_run("out.jsonl", enabled=False) is None
        True
    """
    if not enabled:
        return None
    beside = None
    if output_path is not None and os.fspath(output_path) != "-":
        out = Path(output_path)
        beside = out.with_name(out.name + ".cache.sqlite")
    if path == NEXT_TO_OUTPUT:
        if beside is None:
            raise ConfigError(f"--cache {NEXT_TO_OUTPUT} needs an output file; pass a cache file path instead")
        return SQLiteStore(beside)
    if path:
        return SQLiteStore(path)
    try:
        return SQLiteStore(default_cache_path())
    except ConfigError as exc:
        if beside is None:
            raise
        (warn or log.warning)(f"{exc}; using {beside} instead")
        return SQLiteStore(beside)
