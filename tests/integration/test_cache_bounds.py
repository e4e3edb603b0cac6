"""Issue 9 item 17: one device asking for thousands of distinct pages of its own lists
leaves the render cache bounded (by bytes, and pages past the end of a list are not kept)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from helpers import register
from support import ServerFactory, client_ssl


async def test_distinct_pages_leave_the_cache_bounded(make_server: ServerFactory) -> None:
    srv = await make_server(cache_max_bytes=512 * 1024)
    assert srv.server.sep2 is not None
    cache = srv.server.sep2.cache
    device = srv.client(srv.pki.device_a)
    assert (await device.get("/dcap")).status == 200
    reply = await device.get("/edev")
    assert reply.status == 200
    lists = ["/edev"]
    baseline = len(cache.entries)
    semaphore = asyncio.Semaphore(16)

    async def ask(path: str) -> None:
        async with semaphore:
            reply = await device.get(path)
            assert reply.status == 200, (path, reply.status)

    queries = [f"?s={s}&l=1" for s in range(1500)]
    queries += [f"?s=0&a={a}" for a in range(1500)]
    queries += [f"?s={s}&l={limit}" for s in range(0, 40, 7) for limit in range(1, 200)]
    await asyncio.gather(*(ask(path + q) for path in lists for q in queries))
    assert len(queries) > 3000
    # its list holds one EndDevice: only s = 0 (no `a`) lies within it, one page per limit
    assert len(cache.entries) - baseline <= 200 + 10
    assert cache.size <= 512 * 1024
    # the first page is still served from the cache (the hot path is untouched)
    renders = cache.stats.renders
    assert (await device.get("/edev")).status == 200
    assert cache.stats.renders == renders


async def test_distinct_vtn_queries_leave_its_cache_bounded(make_server: ServerFactory) -> None:
    srv = await make_server(cache_max_bytes=64 * 1024)
    vtn = srv.server.vtn
    assert vtn is not None
    status, created = await srv.admin(
        "POST", "/api/vtn/clients", {"name": "bl-cache", "role": "bl", "scopes": None}
    )
    assert status == 201
    base = f"https://localhost:{srv.server.vtn_port}/openadr3/3.1.0"
    connector = aiohttp.TCPConnector(ssl=client_ssl(srv.pki, None), limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        form = {
            "grant_type": "client_credentials",
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
        }
        async with session.post(base + "/auth/token", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        peak = 0

        async def ask(skip: int) -> None:
            nonlocal peak
            async with session.get(f"{base}/programs?skip={skip}", headers=headers) as response:
                assert response.status == 200
            peak = max(peak, vtn.cache_bytes)

        await asyncio.gather(*(ask(skip) for skip in range(1500)))
    assert 0 < peak <= 64 * 1024


async def test_the_retired_page_cap_is_accepted_with_a_warning(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Old config files still load: `cache_pages_per_list` is ignored, and says so."""
    with caplog.at_level(logging.WARNING, logger="csip.web.server"):
        srv = await make_server(cache_pages_per_list=4)
    assert any("cache_pages_per_list is deprecated" in r.getMessage() for r in caplog.records)
    assert srv.server.sep2 is not None
    await register(srv, srv.pki.device_a)
    device = srv.client(srv.pki.device_a)
    assert (await device.get("/edev")).status == 200
    renders = srv.server.sep2.cache.stats.renders
    assert (await device.get("/edev")).status == 200
    assert srv.server.sep2.cache.stats.renders == renders
