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
