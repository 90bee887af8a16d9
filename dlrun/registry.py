"""A registry of named builders: the names are the ones users type (`model=mlp`, `optim=adam`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dlrun.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to an object (usually a builder function) with a one-line description."""

    def __init__(self, group: str):
        self.group = group
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.group}: '{name}' is registered twice")
            self._items[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"{self.group}.name: unknown '{name}'; choose from: {', '.join(self.names())}")
        return self._items[name]

    def help(self, name: str) -> str:
        return self._help[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
