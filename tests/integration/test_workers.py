"""Several csip workers on one PostgreSQL database (DESIGN "Scale-out"): a write or a
deny-listing in one worker reaches the render cache and client directory of the others
through LISTEN/NOTIFY. (SQLite is one process, so this runs on PostgreSQL only.)"""

from __future__ import annotations

import asyncio

import pytest

from helpers import register
from support import ServerFactory


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_invalidation_reaches_another_worker(make_server: ServerFactory) -> None:
    one = await make_server()
    two = await make_server()
    device = one.pki.device_a
    client_two = two.client(device)
    assert (await client_two.get("/edev")).xml().get("all") == "0"  # now cached in worker two
    await register(one, device)
    await asyncio.sleep(0.2)  # NOTIFY crosses to the other worker's listener
    assert (await client_two.get("/edev")).xml().get("all") == "1"
    status, _ = await one.admin("PUT", f"/api/certificates/{device.lfdi}", {"enabled": False})
    assert status == 200
    await asyncio.sleep(0.2)
    assert (await two.client(device).get("/dcap")).status == 403


async def _until(check: object, seconds: float = 3.0) -> float:
    """Seconds until the awaited check holds (fails the test past `seconds`)."""
    from collections.abc import Awaitable, Callable
    from typing import cast

    probe = cast(Callable[[], Awaitable[bool]], check)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(seconds):
        while not await probe():  # noqa: ASYNC110 - polling a server over HTTP
            await asyncio.sleep(0.02)
    return loop.time() - began


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_bulk_changes_of_500_devices_reach_another_worker(make_server: ServerFactory) -> None:
    """Issue 8 defect 5: a NOTIFY payload of 8,000 bytes or more is refused by PostgreSQL, so
    bulk pre-registration and membership changes used to leave other workers stale. Now the
    NOTIFY carries a change-log sequence number and the other worker reads the tags."""
    import secrets

    one = await make_server()
    two = await make_server()
    agg = one.pki.aggregator
    for method, path in (
        ("POST", "/api/aggregators"),
        ("PUT", f"/api/aggregators/fleet/certificates/{agg.lfdi}"),
    ):
        body = {"name": "fleet"} if method == "POST" else {}
        status, reply = await one.admin(method, path, body)
        assert status in (200, 201), reply
    client = two.client(agg)

    async def listed() -> str | None:
        return (await client.get("/edev?l=1")).xml().get("all")

    assert await listed() == "0"  # cached in worker two
    lfdis = [secrets.token_hex(20).upper() for _ in range(500)]
    status, reply = await one.admin(
        "POST", "/api/end-devices", [{"lfdi": x, "aggregator": "fleet"} for x in lfdis]
    )
    assert status in (200, 201) and reply["created"] == 500

    async def all_listed() -> bool:
        return await listed() == "500"

    assert await _until(all_listed) < 1.0

    status, group = await one.admin("POST", "/api/groups", {"description": "feeder 500"})
    assert status == 201
    first = (await client.get("/edev?s=0&l=1")).xml()[0].get("href")
    last = (await client.get("/edev?s=499&l=1")).xml()[0].get("href")

    async def fsa_all(href: str) -> str | None:
        return (await client.get(f"{href}/fsa")).xml().get("all")

    assert await fsa_all(first) == "0" and await fsa_all(last) == "0"  # cached in two
    status, reply = await one.admin("POST", f"/api/groups/{group['id']}/members", {"lfdis": lfdis})
    assert status in (200, 201), reply

    async def both_members() -> bool:
        return await fsa_all(first) == "1" and await fsa_all(last) == "1"

    assert await _until(both_members) < 1.0
