"""Mutual TLS as csip's 2030.5 listener does it (COMM-003/004, CORE-002), through the real
server: chains of depth 2-4 accepted, bad chains refused at the handshake, the 2030.5 leaf
rules enforced right after it (CLARIFICATIONS "TLS on Python 3.11"), CCM8 negotiated, plain
HTTP refused on the TLS port, and the optional redirect listener."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest

from csip.pki import testpki
from csip.web.tls import client_context

from support import Running, ServerFactory, client_ssl


async def handshake(
    srv: Running, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", srv.server.sep2_port, ssl=context, server_hostname="localhost"
    )


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


@pytest.mark.parametrize("depth", [2, 3, 4])
async def test_chains_of_depth_2_3_4_are_accepted(srv: Running, depth: int) -> None:
    cert = testpki.build_chain(srv.pki.directory, depth, serial=f"depth-{depth}")
    reply = await srv.client(cert).get("/dcap")
    assert reply.status == 200


@pytest.mark.parametrize(
    "kind", ["self-signed", "foreign", "expired", "ca-as-leaf", "mica-bad-eku"]
)
async def test_bad_chains_are_refused_at_the_handshake(srv: Running, kind: str) -> None:
    cert = testpki.issue_special(srv.pki.directory, kind, name=f"refused-{kind}")
    context = client_ssl(srv.pki, cert)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await handshake(srv, context)
        # TLS 1.2: the server's verdict on our certificate arrives as an alert we read here
        data = await http_get(reader, writer, "/dcap")
        if not data:
            raise ConnectionError("closed without an answer")


async def test_no_client_certificate_is_refused(srv: Running) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await handshake(srv, client_context(ca_file=srv.pki.ca))
        if not await http_get(reader, writer, "/dcap"):
            raise ConnectionError("closed without an answer")


@pytest.mark.parametrize("kind", ["rsa", "no-policy", "no-hwname"])
async def test_leaf_rules_are_checked_after_the_handshake(srv: Running, kind: str) -> None:
    cert = testpki.issue_special(srv.pki.directory, kind, name=f"leaf-{kind}")
    client = srv.client(cert)
    for path in ("/dcap", "/tm", "/edev"):
        reply = await client.get(path)
        assert reply.status == 403, (kind, path)
        assert reply.find("s:reasonCode") == "0"
        assert reply.headers.get("Connection", "").lower() == "close"


async def test_ccm8_only_client_negotiates_ccm8(srv: Running) -> None:
    context = client_ssl(srv.pki, srv.pki.device_a)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
    reader, writer = await handshake(srv, context)
    cipher = writer.get_extra_info("cipher")
    assert cipher[0] == "ECDHE-ECDSA-AES128-CCM8"
    assert cipher[1] == "TLSv1.2"
    response = await http_get(reader, writer, "/dcap")
    assert response.startswith(b"HTTP/1.1 200")


async def test_server_prefers_ccm8_when_offered(srv: Running) -> None:
    context = client_ssl(srv.pki, srv.pki.device_a)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-CCM8")
    _, writer = await handshake(srv, context)
    assert writer.get_extra_info("cipher")[0] == "ECDHE-ECDSA-AES128-CCM8"
    writer.close()


async def test_strict_mode_offers_nothing_but_ccm8(make_server: ServerFactory) -> None:
    srv = await make_server(tls_strict_ccm8=True)
    context = client_ssl(srv.pki, srv.pki.device_a)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await handshake(srv, context)
    assert (await srv.client(srv.pki.device_a).get("/dcap")).status == 200


async def test_tls13_only_when_configured(make_server: ServerFactory) -> None:
    default = await make_server()
    context = client_ssl(default.pki, default.pki.device_a)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await handshake(default, context)
    allowed = await make_server(tls_allow_tls13=True)
    context = client_ssl(allowed.pki, allowed.pki.device_a)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    reader, writer = await handshake(allowed, context)
    assert writer.get_extra_info("cipher")[1] == "TLSv1.3"
    assert (await http_get(reader, writer, "/dcap")).startswith(b"HTTP/1.1 200")


async def test_plain_http_on_the_tls_port_is_refused(srv: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.sep2_port)
    writer.write(b"GET /dcap HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        data = b""
    writer.close()
    assert b"DeviceCapability" not in data
    assert not data.startswith(b"HTTP/1.1 200")


async def test_redirect_listener_sends_plain_http_to_https(make_server: ServerFactory) -> None:
    srv = await make_server(http_redirect_port=_free_port())
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{srv.server.redirect_port}/dcap?x=1", allow_redirects=False
        ) as response,
    ):
        assert response.status == 301
        location = response.headers["Location"]
    assert location == f"https://127.0.0.1:{srv.server.sep2_port}/dcap?x=1"
    assert (await srv.client(srv.pki.device_a).get("/dcap")).status == 200


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
