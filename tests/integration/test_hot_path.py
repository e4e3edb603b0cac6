"""Render once, serve many (DESIGN "The hot path"): an unchanged poll does no rendering, no
schema work and no query; a write shows on the next poll; identity is computed once per
connection."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

import csip.web.identity

from helpers import end_device_xml, register
from support import BACKENDS, Running, settle_bus

pytestmark = BACKENDS


class QueryCounter:
    def __init__(self, srv: Running) -> None:
        assert srv.server.store is not None
        self.engine = srv.server.store.engine.sync_engine
        self.count = 0

    def _on_execute(self, *_args: Any) -> None:
        self.count += 1

    def __enter__(self) -> QueryCounter:
        event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_execute)


class NoValidator:
    def validate(self, _document: object) -> bool:
        raise AssertionError("schema validation on the read path")


@pytest.fixture
def identity_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    calls: list[bytes] = []
    original = csip.web.identity.identity_from_der

    def counting(der: bytes) -> csip.web.identity.ConnectionIdentity:
        calls.append(der)
        return original(der)

    monkeypatch.setattr(csip.web.identity, "identity_from_der", counting)
    yield calls


async def test_unchanged_poll_does_no_render_and_no_query(
    srv: Running, identity_calls: list[bytes]
) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    paths = ["/dcap", "/edev", href, href + "/fsa", href + "/rg"]
    await settle_bus(srv)
    first = {path: (await client.get(path)).body for path in paths}
    assert srv.server.sep2 is not None
    stats = srv.server.sep2.cache.stats
    renders = stats.renders
    identities = len(identity_calls)
    schemas = srv.server.sep2.schemas
    # any schema work during these polls would raise, and the poll would answer 500
    srv.server.sep2.schemas = dataclasses.replace(schemas, validator=NoValidator())
    with QueryCounter(srv) as queries:
        for _ in range(20):
            for path in paths:
                reply = await client.get(path)
                assert reply.status == 200
                assert reply.body == first[path]
    assert queries.count == 0
    assert stats.renders == renders
    assert len(identity_calls) == identities  # same keep-alive connection: no recompute
    srv.server.sep2.schemas = schemas

    # a write is visible on the very next poll, and only the changed resources re-render
    body = end_device_xml(device.lfdi, device.sfdi, changed=1900000000)
    assert (await client.put(href, body)).status == 204
    with QueryCounter(srv) as queries:
        assert (await client.get(href)).find("s:changedTime") == "1900000000"
    assert queries.count > 0
    assert stats.renders > renders


async def test_identity_is_computed_once_per_connection(
    srv: Running, identity_calls: list[bytes]
) -> None:
    before = len(identity_calls)
    client = srv.client(srv.pki.device_a)
    for _ in range(10):
        assert (await client.get("/dcap")).status == 200
    assert len(identity_calls) - before == 1
    other = srv.client(srv.pki.device_b)  # a second connection computes its own
    assert (await other.get("/dcap")).status == 200
    assert len(identity_calls) - before == 2


async def test_poll_rate_change_shows_on_next_poll(srv: Running) -> None:
    client = srv.client(srv.pki.device_a)
    assert (await client.get("/dcap")).xml().get("pollRate") == "900"
    status, rates = await srv.admin(
        "PUT", "/api/rates", {"poll_rates": {"DeviceCapability": 60, "EndDeviceList": 30}}
    )
    assert status == 200
    assert rates["poll_rates"]["DeviceCapability"] == 60
    assert (await client.get("/dcap")).xml().get("pollRate") == "60"
    assert (await client.get("/edev")).xml().get("pollRate") == "30"
    status, body = await srv.admin("PUT", "/api/rates", {"poll_rates": {"Nope": 5}})
    assert status == 400 and "Nope" in body["detail"]


async def test_probing_unknown_ids_does_not_grow_the_cache(srv: Running) -> None:
    client = srv.client(srv.pki.device_a)
    assert srv.server.sep2 is not None
    before = len(srv.server.sep2.cache.entries)
    for device_id in range(1000, 1050):
        assert (await client.get(f"/edev/{device_id}")).status == 404
    assert len(srv.server.sep2.cache.entries) == before
