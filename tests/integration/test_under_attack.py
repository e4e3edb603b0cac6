"""Issue 9 "Under attack": slow and idle connections, connection caps, oversized and slow
bodies, overlong lines and bad framing, the Server header. Real TLS, real sockets.

Raw HTTP/1.1 over asyncio streams, so that each test controls every byte (and its timing).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import aiohttp
import pytest
from lxml import etree

from csip.sep2 import schema

from support import Running, ServerFactory, client_ssl

SEP_ERROR = f"{{{schema.SEP_NS}}}Error"
#: Short limits so that the tests wait seconds, not minutes.
FAST = {
    "header_timeout": 1.0,
    "body_timeout": 1.0,
    "keepalive_timeout": 2.0,
    "tls_handshake_timeout": 2.0,
}


def vtn_ssl(srv: Running) -> ssl.SSLContext:
    return client_ssl(srv.pki, None)


class Raw:
    """One raw HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None) -> Raw:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=context,
                server_hostname="localhost" if context else None,
                limit=1 << 20,
            ),
            10,
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, within: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One response: (status, headers lower-cased, body)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), within) if length else b""
        return status, headers, body

    async def closed(self, within: float) -> bool:
        """True when the server closes the connection within `within` s (data is skipped)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        return True

    def close(self) -> None:
        self.writer.close()


def request(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def faces(srv: Running) -> dict[str, tuple[int, ssl.SSLContext | None, str]]:
    """Each face: (port, client TLS context, a path that needs no credentials to reach)."""
    server = srv.server
    return {
        "sep2": (server.sep2_port, client_ssl(srv.pki, srv.pki.device_a), "/dcap"),
        "vtn": (server.vtn_port, vtn_ssl(srv), "/openadr3/3.1.0/programs"),
        "admin": (server.admin_port, None, "/api/status"),
    }


def assert_face_error(face: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """The face's own error body, and the csip Server header."""
    assert headers.get("server") == "csip", headers
    if face == "sep2":
        assert headers["content-type"] == "application/sep+xml"
        assert etree.fromstring(body).tag == SEP_ERROR
    else:
        assert headers["content-type"].startswith("application/json")
        document = json.loads(body)
        assert document["status"] == status
        if face == "vtn":
            assert document["type"] == "about:blank" and "title" in document


async def test_slowloris_cannot_starve_devices(make_server: ServerFactory) -> None:
    """Hundreds of connections sending their headers a byte at a time, on the VTN port (no
    certificate needed) and the 2030.5 port, plus idle ones: a device is still served, and
    every slow or idle connection is answered 408 / closed once its timeout passes."""
    srv = await make_server(**FAST, max_connections_per_client=1000)
    ports = faces(srv)
    slow: list[tuple[str, Raw]] = []
    for face, count in (("vtn", 150), ("sep2", 100)):
        port, context, path = ports[face]
        opened = await asyncio.gather(*(Raw.open(port, context) for _ in range(count)))
        for connection in opened:
            await connection.send(f"GET {path} HTTP/1.1\r\n".encode())
            slow.append((face, connection))
    idle = [await Raw.open(ports["vtn"][0], ports["vtn"][1]) for _ in range(20)]
    started = time.monotonic()

    async def drip() -> None:  # one more header byte every 0.2 s, never the end
        for _ in range(20):
            for _face, connection in slow:
                if not connection.writer.is_closing():
                    connection.writer.write(b"X")
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(drip())
    device = srv.client(srv.pki.device_a)
    reply = await device.get("/dcap")
    assert reply.status == 200
    # every slow connection gets the face's 408 within the header timeout (plus slack)
    for face, connection in slow:
        status, headers, body = await connection.response(within=5)
        assert status == 408
        assert_face_error(face, status, headers, body)
        assert await connection.closed(2)
    assert time.monotonic() - started < FAST["header_timeout"] + 4
    for connection in idle:  # idle ones are closed after keepalive_timeout, no answer
        assert await connection.closed(FAST["keepalive_timeout"] + 3)
    dripping.cancel()
    for _face, connection in slow:
        connection.close()
    for connection in idle:
        connection.close()
    reply = await device.get("/dcap")
    assert reply.status == 200


async def test_a_whole_request_arriving_in_pieces_within_the_timeout_is_served(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(**FAST)
    port, context, path = faces(srv)["admin"]
    connection = await Raw.open(port, context)
    data = request("GET", path, {"Authorization": f"Bearer {srv.admin_token}"})
    for index in range(0, len(data), 16):
        await connection.send(data[index : index + 16])
        await asyncio.sleep(0.01)
    status, headers, _ = await connection.response()
    assert status == 200 and headers["server"] == "csip"
    # keep-alive survives longer than the header timeout while idle
    await asyncio.sleep(FAST["header_timeout"] + 0.3)
    await connection.send(data)
    status, _, _ = await connection.response()
    assert status == 200
    connection.close()


async def test_connection_caps_per_client_and_per_listener(make_server: ServerFactory) -> None:
    srv = await make_server(max_connections_per_client=5)
    port, context, _ = faces(srv)["vtn"]
    held = [await Raw.open(port, context) for _ in range(5)]
    refused = await Raw.open(port, context)
    status, headers, body = await refused.response()
    assert status == 503 and headers["retry-after"] == "10"
    assert_face_error("vtn", status, headers, body)
    assert await refused.closed(3)
    held[0].close()
    await asyncio.sleep(0.3)  # its slot is released
    again = await Raw.open(port, context)
    await again.send(request("GET", "/openadr3/3.1.0/programs"))
    status, _, _ = await again.response()
    assert status == 401  # served (no token): not refused
    for connection in [*held[1:], again]:
        connection.close()

    srv2 = await make_server(max_connections=3, max_connections_per_client=0)
    port, context, _ = faces(srv2)["sep2"]
    held = [await Raw.open(port, context) for _ in range(3)]
    refused = await Raw.open(port, context)
    status, headers, body = await refused.response()
    assert status == 503
    assert_face_error("sep2", status, headers, body)
    assert etree.fromstring(body).findtext(f"{{{schema.SEP_NS}}}reasonCode") == "2"
    for connection in held:
        connection.close()


async def vtn_token(srv: Running) -> str:
    status, created = await srv.admin(
        "POST", "/api/vtn/clients", {"name": "bl-limits", "role": "bl", "scopes": None}
    )
    assert status == 201, created
    form = {
        "grant_type": "client_credentials",
        "client_id": created["client_id"],
        "client_secret": created["client_secret"],
    }
    url = f"https://localhost:{srv.server.vtn_port}/openadr3/3.1.0/auth/token"
    connector = aiohttp.TCPConnector(ssl=vtn_ssl(srv))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=form) as response,
    ):
        assert response.status == 200
        token: str = (await response.json())["access_token"]
    return token


@pytest.mark.parametrize("face", ["sep2", "vtn", "admin"])
async def test_a_declared_oversized_body_is_refused_before_it_is_read(
    make_server: ServerFactory, face: str
) -> None:
    srv = await make_server(**FAST)
    port, context, _ = faces(srv)[face]
    path = {
        "sep2": "/edev",
        "vtn": "/openadr3/3.1.0/programs",
        "admin": "/api/end-devices",
    }[face]
    headers = {
        "Content-Type": "application/sep+xml" if face == "sep2" else "application/json",
        "Content-Length": str(10**9),
        "Authorization": f"Bearer {srv.admin_token}",
    }
    if face == "vtn":
        headers["Authorization"] = f"Bearer {await vtn_token(srv)}"
    connection = await Raw.open(port, context)
    started = time.monotonic()
    await connection.send(request("POST", path, headers) + b"<" * 1000)
    status, response_headers, body = await connection.response(within=5)
    assert status == 413
    assert time.monotonic() - started < 1.0  # at once, not after reading a gigabyte
    assert_face_error(face, status, response_headers, body)
    assert await connection.closed(3)
    connection.close()


async def test_vtn_token_form_oversized_and_slow(make_server: ServerFactory) -> None:
    srv = await make_server(**FAST)
    port, context, _ = faces(srv)["vtn"]
    connection = await Raw.open(port, context)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": str(10**8),
    }
    await connection.send(request("POST", "/openadr3/3.1.0/auth/token", headers))
    status, response_headers, body = await connection.response(within=5)
    assert status == 413
    assert_face_error("vtn", status, response_headers, body)
    connection.close()


@pytest.mark.parametrize("face", ["sep2", "admin"])
async def test_a_slow_body_times_out(make_server: ServerFactory, face: str) -> None:
    srv = await make_server(**FAST)
    port, context, _ = faces(srv)[face]
    path = "/edev" if face == "sep2" else "/api/end-devices"
    headers = {
        "Content-Type": "application/sep+xml" if face == "sep2" else "application/json",
        "Content-Length": "500",
        "Authorization": f"Bearer {srv.admin_token}",
    }
    connection = await Raw.open(port, context)
    started = time.monotonic()
    await connection.send(request("POST", path, headers) + b"<EndDevice")
    status, response_headers, body = await connection.response(within=5)
    elapsed = time.monotonic() - started
    assert status == 408
    assert FAST["body_timeout"] - 0.1 < elapsed < FAST["body_timeout"] + 2
    assert_face_error(face, status, response_headers, body)
    assert await connection.closed(3)
    connection.close()


@pytest.mark.parametrize("face", ["sep2", "vtn", "admin"])
@pytest.mark.parametrize("kind", ["long-url", "long-header", "many-headers", "bad-framing"])
async def test_aiohttp_refusals_carry_the_face_body_and_echo_nothing(
    make_server: ServerFactory, face: str, kind: str
) -> None:
    srv = await make_server()
    port, context, path = faces(srv)[face]
    marker = "ECHOCHECK"
    if kind == "long-url":
        data = request("GET", path + "?" + marker * 40_000)
    elif kind == "long-header":
        data = request("GET", path, {"X-Big": marker * 4000})
    elif kind == "many-headers":
        data = request("GET", path, {f"X-{marker}-{i}": "1" for i in range(300)})
    else:
        data = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5{marker}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
    connection = await Raw.open(port, context)
    await connection.send(data)
    status, headers, body = await connection.response()
    assert 400 <= status < 500, status
    assert_face_error(face, status, headers, body)
    assert marker.encode() not in body
    assert not any(marker in value for value in headers.values())
    connection.close()


@pytest.mark.parametrize("face", ["sep2", "vtn", "admin"])
async def test_server_header_is_csip_on_success_and_error_paths(
    make_server: ServerFactory, face: str
) -> None:
    srv = await make_server(http_redirect_port=0)
    port, context, path = faces(srv)[face]
    auth = {"Authorization": f"Bearer {srv.admin_token}"} if face == "admin" else {}
    for method, target in (("GET", path), ("GET", "/nowhere"), ("DELETE", path)):
        connection = await Raw.open(port, context)
        await connection.send(request(method, target, auth))
        _status, headers, _body = await connection.response()
        assert headers.get("server") == "csip", (method, target, headers)
        connection.close()
