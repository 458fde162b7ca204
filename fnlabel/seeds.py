"""Per-generation seeds, shared by every backend that can seed its sampler.

``GenerationParams.seed`` seeds a whole request. Generation ``i`` of each prompt
samples with :func:`generation_seed` ``(seed, i)``: the generations of one prompt
differ from each other, and a rerun with the same seed reproduces all of them.
Asking for more generations never changes the earlier ones. Unseeded requests
draw a fresh seed per generation from the OS (:func:`random_seed`).
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["SEED_LIMIT", "generation_seed", "random_seed", "generation_seeds"]

#: seeds are in ``[0, SEED_LIMIT)``: they fit an unsigned 32-bit int and avoid
#: 0xFFFFFFFF, which llama.cpp reads as "pick a random seed"
SEED_LIMIT = 2**32 - 1


def generation_seed(seed: int, index: int) -> int:
    """The sampler seed of generation ``index`` for a request seeded with ``seed``.

    Generation 0 uses ``seed`` itself when it fits (so one generation with
    ``seed=s`` is what the underlying library gives for ``seed=s``); the others
    use a hash of ``(seed, index)``.

    Examples:
        >>> generation_seed(42, 0)
        42
        >>> generation_seed(42, 1) == generation_seed(42, 1) != generation_seed(42, 2)
        True
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    if index == 0 and seed < SEED_LIMIT:
        return seed
    digest = hashlib.blake2b(f"fnlabel:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_LIMIT


def random_seed() -> int:
    """A fresh seed from the OS, for unseeded requests (so reruns differ)."""
    return secrets.randbelow(SEED_LIMIT)


def generation_seeds(seed: int | None, n: int) -> list[int]:
    """The seeds of generations ``0..n-1``: derived from ``seed``, or random when it is ``None``.

    Examples:
        >>> generation_seeds(7, 2) == [generation_seed(7, 0), generation_seed(7, 1)]
        True
    """
    if seed is None:
        return [random_seed() for _ in range(n)]
    return [generation_seed(seed, i) for i in range(n)]
