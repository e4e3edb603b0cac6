"""The render cache: hits, tag invalidation, and no stale fill after a racing write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from csip.services.cache import Entry, RenderCache


async def test_fetch_renders_once_and_invalidates_by_tag() -> None:
    cache = RenderCache()
    renders = 0

    async def load() -> Entry:
        nonlocal renders
        renders += 1
        return Entry(b"x%d" % renders, tags=("edev:1", "settings"))

    assert (await cache.fetch("k", load)).body == b"x1"
    assert (await cache.fetch("k", load)).body == b"x1"
    assert renders == 1 and cache.stats.hits == 1
    cache.invalidate(["other"])
    assert (await cache.fetch("k", load)).body == b"x1"
    cache.invalidate(["settings"])
    assert (await cache.fetch("k", load)).body == b"x2"
    assert "k" in cache.by_tag["edev:1"]
    cache.invalidate(["edev:1"])
    assert "k" not in cache.entries and "k" not in cache.by_tag.get("settings", set())


async def test_a_fill_that_raced_with_a_write_is_not_stored() -> None:
    cache = RenderCache()
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_load() -> Entry:
        started.set()
        await release.wait()
        return Entry(b"stale", tags=("edev:1",))

    task = asyncio.create_task(cache.fetch("k", slow_load))
    await started.wait()
    cache.invalidate(["edev:1"])  # a write committed while the render was in flight
    release.set()
    assert (await task).body == b"stale"  # that one request may see it...
    assert cache.get("k") is None  # ...but it is never served from the cache


async def test_the_cache_is_bounded() -> None:
    cache = RenderCache(max_entries=10)
    for index in range(25):
        cache.put(index, Entry(b"x", tags=("all", f"k{index}")), cache.generation)
    assert len(cache.entries) <= 10
    assert 24 in cache.entries and 0 not in cache.entries  # the oldest went first
    assert all(key in cache.entries for key in cache.by_tag["all"])
    assert "k0" not in cache.by_tag


async def test_the_cache_is_bounded_by_bytes_oldest_first() -> None:
    from csip.services.cache import ENTRY_OVERHEAD

    cache = RenderCache(max_bytes=100 * (1000 + ENTRY_OVERHEAD))
    for index in range(10_000):
        cache.put(("k", index), Entry(b"x" * 1000, tags=(f"t{index % 7}",)), cache.generation)
        assert cache.size <= cache.max_bytes
    assert len(cache.entries) == 100
    assert ("k", 9_999) in cache.entries and ("k", 0) not in cache.entries
    assert sum(len(keys) for keys in cache.by_tag.values()) == 100
    cache.invalidate(["t1", "t2", "t3", "t4", "t5", "t6", "t0"])
    assert cache.size == 0 and not cache.entries
    cache.put("big", Entry(b"x" * cache.max_bytes), cache.generation)  # larger than the cap
    assert "big" not in cache.entries and cache.size == 0


def test_every_page_within_its_list_is_kept_and_none_past_its_end() -> None:
    from csip.domain.paging import Uncached, parse_page

    # the shape a walker or a poll asks for, whatever its index (no cap on the page number)
    for query in ({}, {"s": "255", "l": "255"}, {"s": str(64 * 10), "l": "10"}, {"s": "9999"}):
        assert parse_page(query, 1, 255).cached, query
    # within the list: kept; past its end: not (the first page always, even of an empty list)
    assert parse_page({"s": "6400", "l": "100"}, 1, 255).kept(100_000)
    assert parse_page({"s": "99999", "l": "1"}, 1, 255).kept(100_000)
    assert not parse_page({"s": "100000", "l": "1"}, 1, 255).kept(100_000)
    assert not parse_page({"s": str(10**6), "l": "100"}, 1, 255).kept(100_000)
    assert parse_page({}, 1, 255).kept(0)
    for query in ({"s": "3", "l": "10"}, {"a": "5"}, {"l": "0"}):
        page = parse_page(query, 1, 255)
        assert not page.cached and not page.kept(100) and type(page.key()) is Uncached, query
    cache = RenderCache()
    cache.put(("edevs", 1, parse_page({"a": "7"}, 1, 255).key()), Entry(b"x"), 0)
    cache.put(("edevs", 1, "s=100&a=None&l=1"), Entry(b"past the end", keep=False), 0)
    assert not cache.entries
    cache.put(("edevs", 1, "s=99&a=None&l=1"), Entry(b"within"), 0)
    assert len(cache.entries) == 1


async def test_different_uncached_pages_never_share_a_fill() -> None:
    """Concurrent misses share a fill only for the same page: a page rendered per request
    (odd `s`, `a`, past the end) answers its own query, not a neighbour's."""
    from csip.domain.paging import parse_page

    cache = RenderCache()

    async def render(start: int) -> Entry:
        await asyncio.sleep(0.01)
        return Entry(b"page at %d" % start, keep=False)

    pages = [parse_page(q, 1, 255) for q in ({"s": "3", "l": "10"}, {"s": "7", "l": "10"})]
    pages += [parse_page({"s": "0", "a": str(a)}, 1, 255) for a in (5, 6)]
    pages += [parse_page({"s": str(s), "l": "100"}, 1, 255) for s in (10**6, 2 * 10**6)]
    bodies = await asyncio.gather(
        *(cache.fetch(("edevs", 1, p.key()), lambda p=p: render(p.start)) for p in pages)
    )
    assert [e.body for e in bodies] == [b"page at %d" % p.start for p in pages]
    assert not cache.entries


async def test_fetch_page_keeps_pages_within_the_list_only() -> None:
    from csip.domain.paging import parse_page

    cache = RenderCache()
    renders = 0
    size = 150

    def build(page_start: int) -> Callable[[], Awaitable[tuple[bytes, int]]]:
        async def run() -> tuple[bytes, int]:
            nonlocal renders
            renders += 1
            return b"page at %d of %d" % (page_start, size), size

        return run

    for start in (0, 100, 149, 150, 10**6):
        page = parse_page({"s": str(start), "l": "1"}, 1, 255)
        for _ in range(2):
            body = await cache.fetch_page(("edevs", 1, page.key()), page, ("edevs",), build(start))
            assert body == b"page at %d of %d" % (start, size)
    # the three pages within the list rendered once each, the two past its end twice each
    assert renders == 3 + 2 * 2
    assert len(cache.entries) == 3


async def test_a_fill_is_kept_when_only_other_tags_changed_meanwhile() -> None:
    """Per-tag versions: a write to another program does not throw away this fill."""
    cache = RenderCache()
    began = cache.generation
    cache.invalidate(["program:2"])  # committed while program 1's render was in flight
    cache.put("p1", Entry(b"p1", tags=("program:1",)), began)
    assert cache.get("p1") is not None
    began = cache.generation
    cache.invalidate(["program:1"])
    cache.put("p1-again", Entry(b"p1", tags=("program:1", "settings")), began)
    assert cache.get("p1-again") is None
    began = cache.generation
    cache.clear()
    cache.put("p3", Entry(b"p3", tags=("program:3",)), began)
    assert cache.get("p3") is None  # anything begun before a clear() is refused


async def test_concurrent_misses_of_one_key_await_one_load() -> None:
    """A thousand devices asking at once for what a write just dropped: one load, not a
    thousand database connections at once."""
    cache = RenderCache()
    loads = 0
    release = asyncio.Event()

    async def load() -> Entry:
        nonlocal loads
        loads += 1
        await release.wait()
        return Entry(b"groups", tags=("visible:agg:1",))

    waiters = [asyncio.create_task(cache.fetch("k", load)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert {(await w).body for w in waiters} == {b"groups"}
    assert loads == 1
    assert cache.get("k") is not None and not cache.inflight


async def test_a_miss_after_an_invalidation_does_not_take_the_running_fill() -> None:
    cache = RenderCache()
    loads = 0
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def load() -> Entry:
        nonlocal loads
        loads += 1
        if loads == 1:
            first_started.set()
            await release.wait()
        return Entry(b"v%d" % loads, tags=("group:1",))

    early = asyncio.create_task(cache.fetch("k", load))
    await first_started.wait()
    cache.invalidate(["group:1"])  # a write the running fill may not have seen
    late = asyncio.create_task(cache.fetch("k", load))
    await asyncio.sleep(0)
    release.set()
    assert (await early).body == b"v1"
    assert (await late).body == b"v2"  # loaded again: it arrived after the write
    assert (await cache.fetch("k", load)).body == b"v2"


async def test_a_failed_fill_reaches_every_waiter_and_is_not_remembered() -> None:
    cache = RenderCache()
    release = asyncio.Event()

    async def load() -> Entry:
        await release.wait()
        raise LookupError("gone")

    waiters = [asyncio.create_task(cache.fetch("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    for waiter in waiters:
        try:
            await waiter
        except LookupError:
            pass
        else:  # pragma: no cover
            raise AssertionError("the fill's error must reach its waiters")
    assert not cache.inflight and cache.get("k") is None
