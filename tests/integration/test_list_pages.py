"""Every page within a 2030.5 list is cached, whatever its index (issue 14: 10,000 vs 100,000
devices costing the same per poll); pages past the end of a list are rendered per request
and never stored, so a client asking for ever new pages grows nothing. Over real mutual TLS,
on SQLite and PostgreSQL."""

from __future__ import annotations

from test_fast_lane import world
from test_telemetry import create_mup, declared, mmr, mmr_list, reading

from csip.pki.identity import sfdi_from_lfdi
from csip.web.sep2_common import LANE

from helpers import aggregator_fleet, random_lfdi
from support import BACKENDS, Reply, Running, Sep2Client, settle_bus

pytestmark = BACKENDS
NS = "{urn:ieee:std:2030.5:ns}"
#: More devices than the old cap of 64 cached pages holds at l=1.
FLEET = 150


def sfdis(reply: Reply) -> list[int]:
    assert reply.status == 200, reply.body
    return [int(e.findtext(NS + "sFDI") or 0) for e in reply.xml()]


async def test_a_page_past_the_64th_is_cached_and_follows_writes(srv: Running) -> None:
    agg = srv.pki.aggregator
    lfdis = await aggregator_fleet(srv, "agg-pages", agg.lfdi, FLEET)
    client = srv.client(agg)
    assert (await client.get("/dcap")).status == 200  # makes the aggregator's own EndDevice
    await settle_bus(srv)
    assert srv.server.sep2 is not None and srv.server.app is not None
    stats = srv.server.sep2.cache.stats
    lane = srv.server.app.sep2_app[LANE]

    def order(managed: list[str]) -> list[int]:
        """Its own EndDevice first, then the managed ones by sFDI (issue 9 item 8)."""
        return [agg.sfdi, *sorted(sfdi_from_lfdi(x) for x in managed)]

    async def cached_page(start: int, expected: list[int]) -> Reply:
        """The page at `start` shows the right device; asked again, it is not rendered and
        the fast lane answers it."""
        path = f"/edev?s={start}&l=1"
        first = await client.get(path)
        assert sfdis(first) == [expected[start]], path
        assert first.xml().get("all") == str(len(expected))
        renders, answered = stats.renders, lane.stats.answered
        again = await client.get(path)
        assert again.body == first.body
        assert stats.renders == renders, path  # served from the render cache
        assert lane.stats.answered == answered + 1, path  # by the fast lane
        return first

    expected = order(lfdis)
    for start in (100, 120, FLEET):  # pages 101, 121 and the last: past the old cap
        await cached_page(start, expected)

    # a deleted device leaves the page at once: the next one moves up
    gone = next(x for x in lfdis if sfdi_from_lfdi(x) == expected[100])
    assert (await srv.admin("DELETE", f"/api/end-devices/{gone}"))[0] in (200, 204)
    lfdis.remove(gone)
    await settle_bus(srv)
    expected = order(lfdis)
    await cached_page(100, expected)
    # the last page is now past the end: rendered per request, never stored
    past = await client.get(f"/edev?s={FLEET}&l=1")
    assert (past.xml().get("all"), past.xml().get("results")) == (str(FLEET), "0")
    renders = stats.renders
    assert (await client.get(f"/edev?s={FLEET}&l=1")).body == past.body
    assert stats.renders == renders + 1

    # a new device joins the list: the page shows the new order and count
    lfdis.append(random_lfdi())
    status, _ = await srv.admin(
        "POST", "/api/end-devices", [{"lfdi": lfdis[-1], "aggregator": "agg-pages"}]
    )
    assert status == 201
    await settle_bus(srv)
    expected = order(lfdis)
    await cached_page(100, expected)
    await cached_page(FLEET, expected)


async def list_paths(srv: Running) -> tuple[list[str], list[str]]:
    """The device's and the aggregator's 2030.5 lists (every list that pages with s/a/l,
    holding at least one item where the setup allows)."""
    paths = await world(srv)
    device_href = paths["device_href"][0]
    derp = paths["derp"][0]
    pid = derp.rsplit("/", 1)[1]

    def lists(found: list[str]) -> list[str]:
        bare = {p.split("?")[0] for p in found}
        listing = (
            "/edev",
            "/fsa",
            "/derp",
            "/derc",
            "/actderc",
            "/dc",
            "/msg",
            "/txt",
            "/acttxt",
            "/der",
        )
        return sorted(p for p in bare if p.endswith(listing) and not p.endswith("/der/1"))

    device = srv.client(srv.pki.device_a)
    mup = await create_mup(device, srv.pki.device_a.lfdi, mmrs=declared(1, 38, 0, 128, {}))
    assert (await device.post(mup, mmr_list(mmr(1, reading=reading(4400))))).status == 201
    upt = "/upt/" + mup.rsplit("/", 1)[1]
    meter = (await device.get(f"{upt}/mr")).xml()[0].get("href")
    assert meter
    telemetry = [
        "/mup",
        "/upt",
        f"{upt}/mr",
        f"{meter}/rs",
        f"{meter}/rs/1/r",
        f"{device_href}/lel",
        "/rsps",
        f"/rsps/{pid}/rsp",
    ]
    return lists(paths["device"]) + telemetry, lists(paths["aggregator"])


async def test_pages_past_the_end_of_any_list_are_never_stored(srv: Running) -> None:
    device_lists, aggregator_lists = await list_paths(srv)
    assert len(device_lists) == 19  # every paged list route but /sub (never cached)
    clients = [
        (srv.client(srv.pki.device_a), device_lists),
        (srv.client(srv.pki.aggregator), aggregator_lists),
    ]
    await settle_bus(srv)
    assert srv.server.sep2 is not None and srv.server.app is not None
    cache = srv.server.sep2.cache
    lane = srv.server.app.sep2_app[LANE]

    async def ask_all(client: Sep2Client, paths: list[str], query: str) -> None:
        for path in paths:
            reply = await client.get(path + query)
            assert reply.status == 200, (path + query, reply.body)
            if "s=" in query and "&a=" not in query:
                assert reply.xml().get("results") == "0", (path + query, reply.body)

    # the first page of each list (and everything behind it) is cached, as are the
    # derived data a page past the end reads (the program's state, visible groups ...)
    for client, paths in clients:
        await ask_all(client, paths, "")
        await ask_all(client, paths, "?s=4000000&l=1")
    keys, answers = set(cache.entries), len(lane.answers)
    for client, paths in clients:
        for k in range(1, 6):
            await ask_all(client, paths, f"?s={k * 10**6}&l=1")
            await ask_all(client, paths, f"?s={k * 10**6}&l=255")
            await ask_all(client, paths, f"?s={k * 10**6 + 7}&l=10")  # odd s
            await ask_all(client, paths, f"?s=0&a={1_700_000_000 + k}")
    assert set(cache.entries) <= keys
    assert len(lane.answers) == answers
