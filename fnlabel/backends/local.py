"""What the local backends (llama.cpp, transformers) share: stop-string cutting, prompt kinds, a model cache."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from fnlabel.errors import BackendError
from fnlabel.types import FormattedPrompt

__all__ = ["cut_at_stop", "is_chat", "ModelCache"]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (the stop string excluded).

    Examples:
        >>> cut_at_stop("a, b. c", [".", ","])
        'a'
    """
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def is_chat(prompt: FormattedPrompt, index: int) -> bool:
    """True for chat messages, False for a string; anything else is a :class:`BackendError`."""
    if isinstance(prompt, str):
        return False
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return True
    raise BackendError(
        f"prompt {index} is neither a string nor a list of {{'role', 'content'}} messages: {prompt!r:.200}"
    )


class ModelCache:
    """Loaded models keyed by their (frozen, hashable) config, each with its own lock.

    A model loads once per config, however many backends are built from it; the
    lock serializes calls into libraries that are not thread safe.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, tuple[Any, threading.Lock]] = {}
        self._loading = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> tuple[Any, threading.Lock]:
        item = self._items.get(key)
        if item is None:
            with self._loading:
                item = self._items.get(key)
                if item is None:
                    item = (load(), threading.Lock())
                    self._items[key] = item
        return item

    def pop(self, key: Hashable, close: Callable[[Any], Any] | None = None) -> Any | None:
        """Forget the model of ``key`` (the next call loads it again); return it, or None.

        ``close(model)`` runs under the model's lock: a call still running in it finishes
        first (freeing a native model under a running call crashes the process).
        """
        with self._loading:
            item = self._items.pop(key, None)
        if item is None:
            return None
        if close is not None:
            with item[1]:
                close(item[0])
        return item[0]

    @contextlib.contextmanager
    def using(self, key: Hashable, load: Callable[[], Any]) -> Iterator[Any]:
        """The model of ``key``, loaded if needed, held under its lock; never one closed by :meth:`pop`."""
        while True:
            item = self.get(key, load)
            with item[1]:
                if self._items.get(key) is item:  # not popped (and closed) while this call waited
                    yield item[0]
                    return
