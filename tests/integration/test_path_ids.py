"""Issue 9 item 14: ids in a path beyond what the database can hold (2^31-1 on PostgreSQL's
INTEGER, 2^63-1 on SQLite) are 404 on every route that takes one, never 500.

The routes are walked from the live routers, so a route added later is covered too.
"""

from __future__ import annotations

import re

import aiohttp
from aiohttp import web

from csip.web import limits

from support import BACKENDS, Running, ServerFactory, client_ssl

pytestmark = BACKENDS

#: Just past PostgreSQL's INTEGER, past SQLite's INTEGER, and absurd.
HUGE = ("2147483648", "9223372036854775808", "9" * 40)
#: Placeholders that are integer ids (the rest are names, LFDIs, document parts).
ID_NAMES = {"id", "der", "n", "gid", "pid", "cid", "sid", "mup", "mr"}


def id_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, formatter, pattern) of every route with at least one integer id."""
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        formatter = info.get("formatter")
        if not formatter:
            continue
        names = set(re.findall(r"{(\w+)}", formatter))
        if names & ID_NAMES:
            found.append((route.method, formatter, info["pattern"].pattern))
    return found


def fill(formatter: str, pattern: str, value: str) -> str:
    parts = dict(re.findall(r"\(\?P<(\w+)>([^)]*)\)", pattern))

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ID_NAMES:
            return value
        if name == "lfdi":
            return "0" * 40
        alternatives = parts.get(name, "x")
        return alternatives.split("|")[0] if "|" in alternatives else "x"

    return re.sub(r"{(\w+)}", one, formatter)


def app_of(srv: Running, face: str) -> web.Application:
    for runner in srv.server.runners:
        app = runner.app
        if app.get(limits.FACE) == face:
            return app
    raise AssertionError(face)


async def test_out_of_range_ids_are_404_on_every_route(make_server: ServerFactory) -> None:
    srv = await make_server()
    device = srv.client(srv.pki.device_a)
    assert (await device.get("/dcap")).status == 200
    walked = 0
    sep2_routes = id_routes(app_of(srv, "sep2"))
    assert len(sep2_routes) >= 17
    for method, formatter, pattern in sep2_routes:
        for value in HUGE:
            path = fill(formatter, pattern, value)
            body = "<x/>" if method in ("POST", "PUT") else None
            reply = await device.request(method, path, body)
            assert reply.status == 404, (method, path, reply.status, reply.body[:200])
            walked += 1
    admin_routes = id_routes(app_of(srv, "admin"))
    assert admin_routes
    async with aiohttp.ClientSession() as session:
        for method, formatter, pattern in admin_routes:
            for value in HUGE:
                path = fill(formatter, pattern, value)
                async with session.request(
                    method,
                    srv.admin_base + path,
                    json={} if method in ("POST", "PUT") else None,
                    headers={"Authorization": f"Bearer {srv.admin_token}"},
                ) as response:
                    assert response.status == 404, (method, path, response.status)
                walked += 1
    assert walked >= 3 * (len(sep2_routes) + len(admin_routes))


async def test_vtn_object_ids_out_of_range_are_404(make_server: ServerFactory) -> None:
    """VTN ids are strings on the wire (any text); numeric ones past any integer column
    are simply unknown: 404 on every route that takes one."""
    srv = await make_server()
    status, created = await srv.admin(
        "POST", "/api/vtn/clients", {"name": "bl-ids", "role": "bl", "scopes": None}
    )
    assert status == 201
    base = f"https://localhost:{srv.server.vtn_port}/openadr3/3.1.0"
    connector = aiohttp.TCPConnector(ssl=client_ssl(srv.pki, None))
    async with aiohttp.ClientSession(connector=connector) as session:
        form = {
            "grant_type": "client_credentials",
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
        }
        async with session.post(base + "/auth/token", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        app = app_of(srv, "vtn")
        for route in app.router.routes():
            formatter = route.resource.get_info().get("formatter") if route.resource else None
            if not formatter or not re.search(r"{(id|programID|venID)}", formatter):
                continue
            for value in HUGE:
                path = re.sub(r"{collection}", "programs", formatter)
                path = re.sub(r"{\w+}", value, path)
                async with session.request(
                    route.method,
                    "https://localhost:" + str(srv.server.vtn_port) + path,
                    headers=headers,
                    json={} if route.method == "PUT" else None,
                ) as response:
                    assert response.status in (400, 404), (route.method, path, response.status)
                    if route.method != "PUT":
                        assert response.status == 404, (route.method, path)
