"""Issue 9 item 16: what clients send cannot forge log lines, and a client that goes away or
sends bad framing is one INFO line, never an ERROR with a traceback."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest

from csip.logsafe import Summary, safe

from support import ServerFactory, client_ssl

FORGED = "2026-11-29 23:59:59 ERROR csip.admin token rotated by operator"


def test_safe_escapes_control_characters_and_cuts_long_values() -> None:
    assert safe("a\nb\r\tc\x1b[31m\u2028d\\x0a") == "a\\x0ab\\x0d\\x09c\\x1b[31m\\u2028d\\\\x0a"
    assert safe("x" * 500).endswith("...") and len(safe("x" * 500)) == 203
    assert safe(b"bytes") == "b'bytes'"


def test_summary_logs_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("csip.test.summary")
    summary = Summary(logger, logging.WARNING, "busy", interval=3600)
    with caplog.at_level(logging.INFO, logger="csip.test.summary"):
        for _ in range(1000):
            summary.note("one more")
    assert len(caplog.records) == 1 and summary.total == 1000


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("csip", "aiohttp", "asyncio"))]


async def test_rejected_values_are_logged_escaped(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    srv = await make_server()
    device = srv.client(srv.pki.device_a)
    body = (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns">'
        f"<lFDI>ABCD&#10;{FORGED}</lFDI><sFDI>1</sFDI><changedTime>0</changedTime></EndDevice>"
    )
    with caplog.at_level(logging.INFO):
        reply = await device.post("/edev", body)
        forged_path = await device.get("/edev/%0A" + FORGED.replace(" ", "%20") + "?s=x")
    assert reply.status == 400
    assert forged_path.status in (400, 404)
    records = lines(caplog)
    assert records, "the refusal is logged"
    for record in records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message, message
    assert any("\\x0a" in r.getMessage() and "ERROR csip.admin" in r.getMessage() for r in records)


async def _raw(port: int, context: ssl.SSLContext | None, data: bytes, *, wait: bool) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
    )
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10) if wait else b""
    writer.close()
    return answer


@pytest.mark.parametrize("face", ["sep2", "vtn", "admin"])
async def test_disconnects_and_bad_framing_are_one_info_line(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, face: str
) -> None:
    srv = await make_server()
    server = srv.server
    port, context, path = {
        "sep2": (server.sep2_port, client_ssl(srv.pki, srv.pki.device_a), "/edev"),
        "vtn": (server.vtn_port, client_ssl(srv.pki, None), "/openadr3/3.1.0/auth/token"),
        "admin": (server.admin_port, None, "/api/end-devices"),
    }[face]
    content_type = {
        "sep2": "application/sep+xml",
        "vtn": "application/x-www-form-urlencoded",
        "admin": "application/json",
    }[face]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Authorization: Bearer {srv.admin_token}\r\n"
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        # bad framing in the body: a chunk size that is not hex
        await _raw(
            port,
            context,
            (head + "Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n").encode(),
            wait=True,
        )
        # a client that goes away in the middle of its body
        await _raw(port, context, (head + "Content-Length: 1000\r\n\r\n<abc").encode(), wait=False)
        await asyncio.sleep(0.5)
    records = [r for r in lines(caplog) if r.levelno >= logging.INFO]
    assert not [r for r in records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in records
    ]
    assert not [r for r in records if r.exc_info], "no traceback"
    assert 1 <= len(records) <= 2, [r.getMessage() for r in records]
