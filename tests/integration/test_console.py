"""The operator console through the real admin listener (issue 13): login sets a hardened
session cookie, every POST needs its CSRF token, a viewer's POST is 403, an operator's event
form reaches a device's DERControlList over mutual TLS, and the audit log shows it in the
console and in GET /api/audit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import aiohttp

from csip.services.admin import PreRegistration
from csip.services.demo import BATTERY_KW, load_into

from support import Running, settle_bus

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A cookie-keeping HTTP client that reads CSRF tokens out of the pages, as a browser
    submitting the console's forms would."""

    def __init__(self, srv: Running) -> None:
        self.base = srv.admin_base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.text()

    async def post(self, path: str, data: Any) -> aiohttp.ClientResponse:
        async with self.session.post(
            self.base + path, data=data, allow_redirects=False
        ) as response:
            await response.read()
            return response

    async def csrf(self, path: str) -> str:
        _, page = await self.get(path)
        found = CSRF.search(page)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    async def login(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        token = await self.csrf("/console/login")
        return await self.post(
            "/console/login", {"csrf": token, "name": name, "password": password}
        )

    async def close(self) -> None:
        await self.session.close()


async def setup(srv: Running) -> None:
    app = srv.server.app
    assert app is not None
    await app.admin.preregister([PreRegistration(srv.pki.device_a.lfdi)])
    await load_into(app, 6, extra_lfdis=[srv.pki.device_a.lfdi])
    await app.operators.add("alice", "operator", PASSWORD)
    await app.operators.add("victor", "viewer", PASSWORD)


async def test_login_cookie_csrf_and_viewer_refusals(srv: Running) -> None:
    await setup(srv)
    browser = Browser(srv)
    try:
        status, page = await browser.get("/console/fleet")
        assert status == 200 and "Log in" in page  # redirected to the form
        refused = await browser.login("alice", "wrong password!")
        assert refused.status == 401
        response = await browser.login("alice")
        assert response.status == 303
        cookie = response.cookies["csip_console"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
        assert cookie["path"] == "/console"
        status, page = await browser.get("/console/fleet")
        assert status == 200 and "7 device(s)" in page
        # a form without its token is refused, whoever is logged in
        (program_id,) = re.findall(
            r'<option value="([0-9a-f]+)" selected>demo-peak',
            (await browser.get("/console/programs"))[1],
        )
        form = {"program": program_id, "start": "2099-01-01T00:00", "values": "1"}
        assert (await browser.post("/console/events", form)).status == 403
        assert (await browser.post("/console/events", form | {"csrf": "forged"})).status == 403
        # logout ends the session
        token = await browser.csrf("/console/fleet")
        assert (await browser.post("/console/logout", {"csrf": token})).status == 303
        status, page = await browser.get("/console/fleet")
        assert "Log in" in page

        viewer = Browser(srv)
        try:
            assert (await viewer.login("victor")).status == 303
            token = await viewer.csrf("/console/fleet")
            refused = await viewer.post("/console/events", form | {"csrf": token})
            assert refused.status == 403
            _, page = await viewer.get("/console/programs")
            assert "Create event" not in page
        finally:
            await viewer.close()
    finally:
        await browser.close()


async def test_lockout_after_repeated_failures(srv: Running) -> None:
    await setup(srv)
    browser = Browser(srv)
    try:
        for _ in range(5):
            assert (await browser.login("alice", "not the password")).status == 401
        response = await browser.login("alice")
        assert response.status == 401
        token = await browser.csrf("/console/login")
        async with browser.session.post(
            browser.base + "/console/login",
            data={"csrf": token, "name": "alice", "password": PASSWORD},
        ) as answer:
            assert "locked" in await answer.text()
    finally:
        await browser.close()


async def test_an_event_from_the_form_reaches_a_device_and_the_audit_log(srv: Running) -> None:
    await setup(srv)
    app = srv.server.app
    assert app is not None
    browser = Browser(srv)
    try:
        await browser.login("alice")
        _, page = await browser.get("/console/programs")
        (program_id,) = re.findall(r'<option value="([0-9a-f]+)" selected>demo-peak', page)
        token = CSRF.search(page).group(1)  # type: ignore[union-attr]
        form = {
            "csrf": token,
            "program": program_id,
            "name": "console peak",
            "start": "not a time",
            "duration_minutes": "30",
            "intervals": "1",
            "payload_type": "SIMPLE",
            "values": "7",
            "targets": "feeder-north",
        }
        async with browser.session.post(browser.base + "/console/events", data=form) as bad:
            assert bad.status == 400
            text = await bad.text()
        assert "UTC date and time" in text and "SIMPLE levels are 0, 1, 2 or 3" in text
        start = app.clock.now_int() + 7200
        form |= {
            "start": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M"),
            "values": "2",
        }
        created = await browser.post("/console/events", form)
        assert created.status == 303
        event_path = created.headers["Location"]
        event_id = event_path.rsplit("/", 1)[1]

        mapping = await app.engine.mapping(event_id)
        (group,) = mapping["groups"]
        (control,) = group["controls"]
        device = srv.client(srv.pki.device_a)
        reply = await device.get(f"/derp/{control['program']}/derc?l=100")
        assert reply.status == 200
        mrids = [m.text for m in reply.xml().iter("{urn:ieee:std:2030.5:ns}mRID")]
        href_reply = await device.get(control["href"])
        own = href_reply.find("{urn:ieee:std:2030.5:ns}mRID")
        assert own in mrids
        assert href_reply.find("{*}EventStatus/{*}currentStatus") == "0"  # scheduled

        token = await browser.csrf(event_path)
        cancelled = await browser.post(f"{event_path}/cancel", {"csrf": token})
        assert cancelled.status == 303
        await settle_bus(srv)
        after = await device.get(control["href"])
        assert after.find("{*}EventStatus/{*}currentStatus") == "2"  # cancelled
        _, page = await browser.get(event_path)
        assert 'id="event-status">cancelled' in page

        status, audit = await srv.admin("GET", "/api/audit?operator=alice")
        assert status == 200
        actions = [(e["action"], e["target"]) for e in audit["items"]]
        assert actions[:2] == [("event.cancel", event_id), ("event.create", event_id)]
        assert audit["items"][1]["after"]["eventName"] == "console peak"
        _, page = await browser.get("/console/audit")
        assert "event.cancel" in page and "event.create" in page
    finally:
        await browser.close()


async def test_every_page_renders_with_demo_data(srv: Running) -> None:
    await setup(srv)
    browser = Browser(srv)
    try:
        await browser.login("victor")
        _, fleet = await browser.get("/console/fleet")
        lfdi = srv.pki.device_a.lfdi
        assert lfdi[:16] in fleet
        filtered = (await browser.get("/console/fleet?oem=GridBox"))[1]
        assert "GridBox" in filtered and "Heliox</td>" not in filtered
        for path in (
            f"/console/devices/{lfdi}",
            "/console/programs",
            "/console/capacity",
            "/console/capacity?scope=aggregator:demo-aggregator-a",
            "/console/conformance",
            "/console/vtn",
            "/console/audit",
        ):
            status, _ = await browser.get(path)
            assert status == 200, path
        _, capacity = await browser.get("/console/capacity")
        # both capacity plots drew a line, and the battery event its requested and delivered
        assert capacity.count('class="series"') == 4
        assert "battery dispatch: requested vs delivered" in capacity
        requested = re.findall(r'<td class="num requested">([^<]*)</td>', capacity)
        assert requested == [f"{kw * 2:.1f}" for kw in BATTERY_KW]
        _, programs = await browser.get("/console/programs")
        event = re.search(r'href="/console/events/([0-9a-f]+)">peak now', programs)
        assert event is not None
        async with browser.session.get(
            f"{browser.base}/console/settlement/{event.group(1)}?format=csv"
        ) as csv:
            assert csv.status == 200 and csv.content_type == "text/csv"
            assert (await csv.text()).startswith("kind,id,delivered_kwh")
        # the settlement page of a SIMPLE limit event: its intervals, and no power asked
        _, settled = await browser.get(f"/console/settlement/{event.group(1)}")
        assert re.findall(r'<td class="num requested">([^<]*)</td>', settled) == ["", ""]
        assert settled.count('<td class="num delivered">') == 2
        async with browser.session.get(browser.base + "/console/fleet") as answer:
            policy = answer.headers["Content-Security-Policy"]
            assert "script-src" not in policy and "default-src 'none'" in policy
    finally:
        await browser.close()


async def test_the_audit_api_needs_the_admin_token(srv: Running) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(srv.admin_base + "/api/audit") as answer,
    ):
        assert answer.status == 401
    status, _ = await srv.admin("PUT", "/api/rates", {"post_rate": 600})
    assert status == 200
    status, audit = await srv.admin("GET", "/api/audit?operator=admin-api")
    assert audit["items"][0]["action"] == "PUT /api/rates"
