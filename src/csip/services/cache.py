"""Render once, serve many: rendered bytes keyed by resource, dropped by tag on change.

A poll of an unchanged resource is a dict lookup. Writes (here or, through the bus, in
another worker) drop every entry carrying one of the changed tags. A fill that raced with
an invalidation of one of *its own* tags is not stored, so a stale render can never outlive
the write that superseded it, while writes elsewhere (another program, another device) do
not throw away fills they cannot have made stale.

Fills are single-flight: concurrent misses of one key (a thousand devices of one aggregator
asking for its visible groups the moment a write dropped them) await one load instead of each
taking a database connection at once. A caller that arrives after an invalidation of the
running fill's own tags does not take its (possibly stale) result: it loads again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from csip.domain.paging import Page, Uncached

#: While a request that the fast lane may learn from runs (web/fastlane.py), every entry it
#: reads or stores is appended here: its answer is current exactly as long as each of those
#: entries is still the one in the cache. None (the default) records nothing.
READS: ContextVar[list[tuple[Hashable, Entry]] | None] = ContextVar(
    "csip_cache_reads", default=None
)

#: What one entry costs beyond its bytes (the Entry, its key tuple, the dict slot, tag sets).
ENTRY_OVERHEAD = 320


@dataclass(slots=True)
class Entry:
    body: bytes
    #: What access control needs (the EndDevice, the group ...), or derived data itself.
    owner: Any = None
    tags: tuple[str, ...] = ()
    #: Server-clock time at which this rendering goes stale with no write (an event starts,
    #: ends or is superseded); None = only a write changes it.
    expires_at: float | None = None
    #: False: answer this request (and the concurrent misses sharing its fill) but never
    #: store it: a list page past the end of its list (domain.paging.Page.kept).
    keep: bool = True


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    renders: int = 0
    #: Polls answered by the web layer's fast lane from an answer it checked against this
    #: cache (those do not pass through `get`).
    fast_lane: int = 0


def _no_clock() -> float:
    return 0.0


def _retrieve(future: asyncio.Future[Entry]) -> None:
    """Mark a fill's error as seen: its waiters may all have gone (a closed connection)."""
    if not future.cancelled():
        future.exception()


@dataclass
class RenderCache:
    #: Past this many entries the oldest tenth is dropped (pages past the end of a list
    #: are never stored at all, so asking for ever new pages grows nothing).
    max_entries: int = 1_000_000
    #: Past this many bytes (bodies plus ENTRY_OVERHEAD each) the oldest entries are dropped.
    max_bytes: int = 1024 * 1024 * 1024
    #: The server's clock (seconds); entries with expires_at are dropped once it passes.
    now: Callable[[], float] = _no_clock
    entries: dict[Hashable, Entry] = field(default_factory=dict)
    by_tag: dict[str, set[Hashable]] = field(default_factory=dict)
    #: Counts invalidations; a fill remembers it when it begins (see `generation`).
    generation: int = 0
    #: Bytes held now (bodies plus ENTRY_OVERHEAD per entry).
    size: int = 0
    #: tag -> the generation at which it was last invalidated.
    changed_at: dict[str, int] = field(default_factory=dict)
    #: Fills begun before this are refused whatever their tags (after clear(), or when
    #: changed_at was trimmed).
    floor: int = 0
    #: changed_at is trimmed past this many tags (a bulk change names thousands).
    max_tags: int = 100_000
    stats: CacheStats = field(default_factory=CacheStats)
    #: Counts entries taken out (dropped, replaced, expired, cleared): while it has not
    #: moved, every entry anyone holds is still the current one (the fast lane's check).
    dropped: int = 0
    #: key -> (the running fill, the generation at which it began): single-flight fills.
    inflight: dict[Hashable, tuple[asyncio.Future[Entry], int]] = field(default_factory=dict)

    def get(self, key: Hashable) -> Entry | None:
        entry = self.entries.get(key)
        if entry is not None and entry.expires_at is not None and self.now() >= entry.expires_at:
            self._drop(key)
            entry = None
        if entry is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            reads = READS.get()
            if reads is not None:
                reads.append((key, entry))
        return entry

    def put(self, key: Hashable, entry: Entry, generation: int) -> None:
        """Store unless one of the entry's tags was invalidated since `generation` was read
        (the fill began)."""
        self.stats.renders += 1
        reads = READS.get()
        if reads is not None:
            reads.append((key, entry))  # not stored below: the answer is never current
        if generation < self.floor:
            return
        changed_at = self.changed_at
        if any(changed_at.get(tag, -1) >= generation for tag in entry.tags):
            return
        if not entry.keep or (type(key) is tuple and key and type(key[-1]) is Uncached):
            return  # a page past the end of its list, or with `a` or an odd `s`
        cost = len(entry.body) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        self._drop(key)
        if len(self.entries) >= self.max_entries:
            self._evict(max(1, self.max_entries // 10))
        if self.size + cost > self.max_bytes:
            self._evict_bytes(self.size + cost - self.max_bytes)
        self.entries[key] = entry
        self.size += cost
        for tag in entry.tags:
            self.by_tag.setdefault(tag, set()).add(key)

    async def fetch(self, key: Hashable, load: Callable[[], Awaitable[Entry]]) -> Entry:
        """The cached entry, or one load shared by every concurrent miss of `key`."""
        entry = self.get(key)
        if entry is not None:
            return entry
        while True:
            arrived = self.generation
            flight = self.inflight.get(key)
            if flight is None:
                flight = (asyncio.ensure_future(self._fill(key, load, arrived)), arrived)
                self.inflight[key] = flight
                flight[0].add_done_callback(_retrieve)
            future, began = flight
            entry = await asyncio.shield(future)
            if arrived == began or not self._stale(entry, began):
                reads = READS.get()
                if reads is not None:
                    reads.append((key, entry))
                return entry
            # an invalidation of its own tags came between that fill's start and our arrival

    async def fetch_page(
        self,
        key: Hashable,
        page: Page,
        tags: tuple[str, ...],
        build: Callable[[], Awaitable[tuple[bytes, int]]],
        expires_at: float | None = None,
    ) -> bytes:
        """A list page's body: cached, or one shared fill of `build`, which gives the body
        and the list's size (its `all`). Only a page within its list is kept
        (domain.paging.Page.kept): pages past the end are rendered per request."""
        entry = self.get(key)
        if entry is None:

            async def load() -> Entry:
                body, total = await build()
                return Entry(body, None, tags, expires_at, keep=page.kept(total))

            entry = await self.fetch(key, load)
        return entry.body

    def _stale(self, entry: Entry, generation: int) -> bool:
        """Whether one of the entry's tags changed since `generation` (a fill that began
        then would be refused by put)."""
        if generation < self.floor:
            return True
        changed_at = self.changed_at
        return any(changed_at.get(tag, -1) >= generation for tag in entry.tags)

    async def _fill(
        self, key: Hashable, load: Callable[[], Awaitable[Entry]], generation: int
    ) -> Entry:
        # the fill is its own task (a copy of the first caller's context): what it reads is
        # covered by the tags of the entry it makes, not a dependency of that caller's answer
        READS.set(None)
        try:
            entry = await load()
            self.put(key, entry, generation)
            return entry
        finally:
            flight = self.inflight.get(key)
            if flight is not None and flight[1] == generation:
                del self.inflight[key]

    def _evict(self, count: int) -> None:
        """Drop the `count` oldest entries (dicts keep insertion order)."""
        for key in list(self.entries)[:count]:
            self._drop(key)

    def _evict_bytes(self, needed: int) -> None:
        """Drop the oldest entries until `needed` bytes are freed."""
        freed = 0
        victims = []
        for key, entry in self.entries.items():
            if freed >= needed:
                break
            victims.append(key)
            freed += len(entry.body) + ENTRY_OVERHEAD
        for key in victims:
            self._drop(key)

    def _drop(self, key: Hashable) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        self.dropped += 1
        self.size -= len(entry.body) + ENTRY_OVERHEAD
        for tag in entry.tags:
            keys = self.by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_tag[tag]

    def invalidate(self, tags: Iterable[str]) -> None:
        stamp = self.generation
        self.generation += 1
        for tag in tags:
            self.changed_at[tag] = stamp
            for key in list(self.by_tag.get(tag, ())):
                self._drop(key)
        if len(self.changed_at) > self.max_tags:
            self.changed_at.clear()
            self.floor = self.generation

    def clear(self) -> None:
        self.generation += 1
        self.floor = self.generation
        self.dropped += 1
        self.changed_at.clear()
        self.entries.clear()
        self.by_tag.clear()
        self.size = 0
