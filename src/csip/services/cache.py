"""Render once, serve many: rendered bytes keyed by resource, dropped by tag on change.

A poll of an unchanged resource is a dict lookup. Writes (here or, through the bus, in
another worker) drop every entry carrying one of the changed tags. A fill that raced with
an invalidation is not stored, so a stale render can never outlive the write that
superseded it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Entry:
    body: bytes
    owner: Any = None
    tags: tuple[str, ...] = ()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    renders: int = 0


@dataclass
class RenderCache:
    entries: dict[Hashable, Entry] = field(default_factory=dict)
    by_tag: dict[str, set[Hashable]] = field(default_factory=dict)
    generation: int = 0
    stats: CacheStats = field(default_factory=CacheStats)

    def get(self, key: Hashable) -> Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return entry

    def put(self, key: Hashable, entry: Entry, generation: int) -> None:
        """Store unless something was invalidated since `generation` was read."""
        self.stats.renders += 1
        if generation != self.generation:
            return
        self.entries[key] = entry
        for tag in entry.tags:
            self.by_tag.setdefault(tag, set()).add(key)

    async def fetch(self, key: Hashable, load: Callable[[], Awaitable[Entry]]) -> Entry:
        entry = self.get(key)
        if entry is not None:
            return entry
        generation = self.generation
        entry = await load()
        self.put(key, entry, generation)
        return entry

    def invalidate(self, tags: Iterable[str]) -> None:
        self.generation += 1
        for tag in tags:
            for key in self.by_tag.pop(tag, ()):
                entry = self.entries.pop(key, None)
                if entry is None:
                    continue
                for other in entry.tags:
                    if other != tag and (keys := self.by_tag.get(other)) is not None:
                        keys.discard(key)

    def clear(self) -> None:
        self.generation += 1
        self.entries.clear()
        self.by_tag.clear()
