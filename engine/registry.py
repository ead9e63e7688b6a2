"""One generic registry for step types and connection types.

Filled with the built-ins first, then with whatever third-party packages
publish under an entry-point group, read only when a name is not built in
(or the whole list is asked for). A plugin adds names; it never replaces a
built-in: registering a name twice, or asking for a name nobody registered, is
an error rather than a silent override.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import EngineError, did_you_mean

T = TypeVar("T")


class RegistryError(EngineError):
    pass


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.group = entry_point_group
        self._items: dict[str, T] = {}
        self._lazy: dict[str, Callable[[], T]] = {}
        self._entry_points_loaded = entry_point_group is None
        # Hosts run in threads and may ask for the same lazy entry at once: one
        # imports it, the others wait and then find it in _items.
        self._lock = threading.RLock()

    def register(self, name: str, item: T) -> T:
        if name in self._items or name in self._lazy:
            raise RegistryError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register_lazy(self, name: str, loader: Callable[[], T]) -> None:
        """Register a name whose implementation is imported on first use."""
        if name in self._items or name in self._lazy:
            raise RegistryError(f"{self.kind} {name!r} is registered twice")
        self._lazy[name] = loader

    def register_path(self, name: str, path: str) -> None:
        """Register a name implemented at "package.module:attribute", imported on
        first use: how built-ins stay out of `runbook --help` start-up."""
        module, _, attribute = path.partition(":")

        def load() -> T:
            import importlib

            item: T = getattr(importlib.import_module(module), attribute)
            return item

        self.register_lazy(name, load)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        with self._lock:
            if self._entry_points_loaded:
                return
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.group or ""):
                self.register_lazy(ep.name, ep.load)
            self._entry_points_loaded = True

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        # Built-ins first: scanning every installed package's entry points costs
        # ~5 ms, paid only for a name that is not built in.
        if name in self._items or name in self._lazy:
            return True
        self._load_entry_points()
        return name in self._items or name in self._lazy

    def get(self, name: str) -> T:
        if name in self:  # entry points are read only for a name not built in
            if name in self._items:
                return self._items[name]
            with self._lock:
                if name in self._items:  # loaded by another thread while we waited
                    return self._items[name]
                if name in self._lazy:
                    item = self._lazy[name]()  # may raise ImportError: keep the entry then
                    del self._lazy[name]
                    self._items[name] = item
                    return item
        hint = did_you_mean(name, self.names())
        raise RegistryError(f"unknown {self.kind} {name!r}" + (f"; {hint}" if hint else ""))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
