"""Issue 13 item 3: `csip serve --log-format json` writes one JSON object per line (time, level,
logger, message; access lines add face, route, status and duration, for the fast lane's
answers too: issue 14), and a malformed request is one INFO line, never a traceback, with
access lines on or off."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support import Pki, ServerFactory, client_ssl

CSIP = [sys.executable, "-m", "csip.cli"]
MALFORMED = b"GET /dcap HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tmp_path: Path, pki: Pki) -> tuple[subprocess.Popen[bytes], int, int] | None:
    """`csip serve` with JSON logs on free ports, once it is up; None if another process
    took one of the ports between choosing and binding (then the caller tries others)."""
    sep2_port, admin_port, vtn_port = free_port(), free_port(), free_port()
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [
                *CSIP, "serve", "--data-dir", str(tmp_path), "--certs-dir", str(pki.directory),
                "--sep2-port", str(sep2_port), "--admin-port", str(admin_port),
                "--vtn-port", str(vtn_port), "--log-format", "json", "--access-log",
            ],
            stdout=out,
            stderr=err,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while "Ctrl-C stops" not in stdout.read_text():
        if process.poll() is not None:
            if "Address already in use" in stderr.read_text():
                return None
            raise AssertionError(stderr.read_text())
        assert time.monotonic() < deadline, "csip serve did not start"
        time.sleep(0.1)
    return process, sep2_port, admin_port


@pytest.fixture
def json_server(tmp_path: Path, pki: Pki) -> Iterator[tuple[int, int, Path, str]]:
    for _ in range(5):
        started = _start(tmp_path, pki)
        if started is not None:
            break
    else:
        raise AssertionError("no free ports for csip serve in five tries")
    process, sep2_port, admin_port = started
    try:
        token = subprocess.run(
            [*CSIP, "admin", "token", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        yield sep2_port, admin_port, tmp_path / "stderr.log", token
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return answer


async def test_json_lines_carry_the_fields(
    json_server: tuple[int, int, Path, str], pki: Pki
) -> None:
    sep2_port, admin_port, stderr, token = json_server
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, pki.device_a))
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):  # the app answers the first, the fast lane the repeats
            async with session.get(f"https://localhost:{sep2_port}/dcap") as response:
                assert response.status == 200
            await asyncio.sleep(0.05)  # the app's handler back at rest (else it keeps the next)
        async with session.get(
            f"http://127.0.0.1:{admin_port}/api/status",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
    answer = await _raw(admin_port, MALFORMED)
    assert b" 400 " in answer.split(b"\r\n")[0]

    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = stderr.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        if any(line.get("status") == 400 for line in lines):
            break
        await asyncio.sleep(0.1)
    assert lines, "the server logged"
    for line in lines:  # every line parses (json.loads above) and has the common fields
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert line["time"].endswith("Z") and "T" in line["time"]
    access = [line for line in lines if line["logger"] == "csip.access"]
    dcaps = [line for line in access if line.get("route") == "/dcap"]
    for dcap in dcaps:  # one line per request, whichever lane answered
        assert dcap["face"] == "sep2" and dcap["status"] == 200 and dcap["level"] == "INFO"
        assert isinstance(dcap["duration_ms"], int | float) and dcap["method"] == "GET"
        assert dcap["path"] == "/dcap" and dcap["peer"] == "127.0.0.1"
    # the app's line may come after the lane's (aiohttp logs once the response is flushed)
    lanes = sorted(line.get("lane", "app") for line in dcaps)
    assert len(lanes) == 3 and lanes[0] == "app" and lanes[-1] == "fast", dcaps
    status = next(line for line in access if line.get("route") == "/api/status")
    assert status["face"] == "admin" and status["status"] == 200
    refused = [line for line in lines if line.get("status") == 400]
    assert len(refused) == 1, refused
    (bad,) = refused
    assert bad["level"] == "INFO" and bad["face"] == "admin" and "detail" in bad
    assert not any("exception" in line or "Traceback" in line["message"] for line in lines)


@pytest.mark.parametrize("access_log", [False, True])
@pytest.mark.parametrize("face", ["sep2", "admin"])
async def test_a_malformed_request_is_one_info_line(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, face: str, access_log: bool
) -> None:
    srv = await make_server(access_log=access_log)
    server = srv.server
    port = server.sep2_port if face == "sep2" else server.admin_port
    context = client_ssl(srv.pki, srv.pki.device_a) if face == "sep2" else None
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
        writer.write(MALFORMED)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        await asyncio.sleep(0.2)
    assert b" 400 " in answer.split(b"\r\n")[0]
    records = [
        r
        for r in caplog.records
        if r.name.startswith(("csip", "aiohttp", "asyncio")) and r.levelno >= logging.INFO
    ]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.INFO and not record.exc_info
    assert "malformed" in record.getMessage().lower() or "400" in record.getMessage()
