"""Named things loaded on first use: built-in kinds, plugins from entry points, lazy re-exports.

A :class:`Registry` maps a recipe ``kind`` to the object it names: the built-in ones
are ``"module:attribute"`` targets imported only when used, and any installed
distribution adds more by declaring an entry point in the registry's group (as
pytest and simonw/llm plugins do)::

    [project.entry-points."fnlabel.backends"]
    my-server = "my_package.backend:MyServerConfig"

Built-in kinds win over a plugin of the same name (the plugin is ignored with a
warning). Entry points are read again whenever ``sys.path`` changes.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

from fnlabel.errors import ConfigError

__all__ = ["Registry", "load_target", "lazy_exports"]

log = logging.getLogger("fnlabel")

T = TypeVar("T")


def load_target(target: str) -> Any:
    """The object named by ``"package.module:attribute"`` (imports the module).

    Examples:
        >>> load_target("fnlabel.formats:as_chatml").__name__
        'as_chatml'
    """
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split(".") if name else ():
        obj = getattr(obj, part)
    return obj


class Registry(Mapping[str, T], Generic[T]):
    """Recipe kinds of one sort (``what``): built-ins plus the plugins of entry-point ``group``.

    ``registry[kind]`` imports and returns the object (``KeyError`` if unknown);
    :meth:`load` does the same with a :class:`~fnlabel.errors.ConfigError` that lists
    the known kinds. ``check(kind, obj)`` validates what a kind loads (a plugin that
    declares the wrong thing is refused with a message naming its distribution).
    """

    def __init__(
        self, what: str, group: str, builtins: Mapping[str, str], check: Callable[[str, Any], None] | None = None
    ) -> None:
        self.what, self.group, self.builtins, self._check = what, group, dict(builtins), check
        self._seen: tuple[tuple[str, ...], dict[str, metadata.EntryPoint]] | None = None
        self._loaded: dict[str, T] = {}

    def plugins(self) -> dict[str, metadata.EntryPoint]:
        """The entry points of the group by name (built-in names left out), read once per ``sys.path``."""
        key = tuple(sys.path)
        if self._seen is None or self._seen[0] != key:
            found: dict[str, metadata.EntryPoint] = {}
            for ep in metadata.entry_points(group=self.group):
                if ep.name in self.builtins:
                    log.warning("%s kind %r of %s is built in: the plugin is ignored", self.what, ep.name, _dist(ep))
                else:
                    found.setdefault(ep.name, ep)
            self._seen = (key, found)
            for kind in [k for k in self._loaded if k not in self.builtins]:
                del self._loaded[kind]  # another sys.path: a plugin kind may name something else now
        return self._seen[1]

    def __iter__(self) -> Iterator[str]:
        yield from self.builtins
        yield from sorted(self.plugins())

    def __len__(self) -> int:
        return len(self.builtins) + len(self.plugins())

    def __contains__(self, kind: object) -> bool:
        return kind in self.builtins or kind in self.plugins()

    def target(self, kind: str) -> str:
        """``"module:attribute"`` of ``kind`` (KeyError if unknown)."""
        if kind in self.builtins:
            return self.builtins[kind]
        return self.plugins()[kind].value

    def origin(self, kind: str) -> str:
        """``"built-in"``, or the distribution of a plugin (``"plugin from my-package 1.0"``)."""
        return "built-in" if kind in self.builtins else f"plugin from {_dist(self.plugins()[kind])}"

    def __getitem__(self, kind: str) -> T:
        if kind in self._loaded:
            return self._loaded[kind]
        target = self.target(kind)  # KeyError for an unknown kind
        try:
            obj = load_target(target)
        except ImportError as exc:
            raise ConfigError(
                f"{self.what} kind {kind!r} is not available in this installation ({exc}); "
                f"it is the {self.origin(kind)} ({target})"
            ) from exc
        except AttributeError as exc:
            raise ConfigError(f"{self.what} kind {kind!r} ({self.origin(kind)}) names {target!r}: {exc}") from exc
        if self._check is not None:
            self._check(kind, obj)
        self._loaded[kind] = obj
        return obj  # type: ignore[no-any-return]

    def unknown(self, kind: object) -> ConfigError:
        """The error for a kind that is not known, listing those that are."""
        return ConfigError(f"unknown {self.what} kind {kind!r}; known kinds: {', '.join(self)}")

    def load(self, kind: str) -> T:
        """``self[kind]``, with a :class:`~fnlabel.errors.ConfigError` listing the known kinds when unknown."""
        if kind not in self:
            raise self.unknown(kind)
        return self[kind]


def _dist(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def lazy_exports(module: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose ``names`` are imported from their modules on first use.

    Keeps ``import fnlabel`` fast: multiprocessing, sqlite, cattrs and Ray load only when needed.
    """
    namespace = sys.modules[module].__dict__

    def __getattr__(name: str) -> Any:
        source = names.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
