"""The VTN as a user runs it: `csip serve` as a process, clients made with the CLI while it
runs, curl with the test PKI's CA, then SIGKILL and a restart on the same data: a webhook
that was still failing is delivered afterwards, and tokens issued before still work."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from vtn_support import WebhookReceiver

from csip.web.tls import client_context

from support import Pki

pytestmark = pytest.mark.slow

CSIP = [sys.executable, "-m", "csip.cli"]
BASE = "/openadr3/3.1.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def csip(*args: str) -> str:
    result = subprocess.run([*CSIP, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


class VtnProcess:
    def __init__(self, data: Path, certs: Path) -> None:
        self.data, self.certs = data, certs
        self.ports = {name: free_port() for name in ("sep2", "admin", "vtn")}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"https://localhost:{self.ports['vtn']}{BASE}"

    async def start(self) -> str:
        self.data.mkdir(parents=True, exist_ok=True)
        log = self.data / f"serve-{time.monotonic_ns()}.log"
        env = {
            **os.environ,
            "CSIP_VTN_WEBHOOK_ALLOW_LOOPBACK": "true",
            # the first retry comes well after the kill that follows the first refusal: a
            # retry already claimed when SIGKILL lands is leased for 120 s (by design)
            "CSIP_OUTBOX_RETRY_DELAYS": "4,1",
        }
        with log.open("w") as out:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - starts it, never waits
                [
                    *CSIP, "serve", "--data-dir", str(self.data), "--certs-dir", str(self.certs),
                    "--sep2-port", str(self.ports["sep2"]),
                    "--admin-port", str(self.ports["admin"]),
                    "--vtn-port", str(self.ports["vtn"]),
                ],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            banner = log.read_text()
            if "Ctrl-C stops" in banner:
                return banner
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"csip serve did not start:\n{log.read_text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def add_client(self, name: str, role: str) -> tuple[str, str]:
        out = csip("clients", "add", name, "--role", role, "--data-dir", str(self.data))
        client_id = re.search(r"client_id: (\S+)", out)
        secret = re.search(r"client_secret: (\S+)", out)
        assert client_id and secret, out
        return client_id[1], secret[1]

    async def curl(self, *args: str) -> Any:
        assert shutil.which("curl"), "curl is needed for the user-level test"
        command = ["curl", "-sS", "--fail-with-body", "--cacert", str(self.certs / "ca.pem"), *args]
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)


async def test_cli_curl_and_sigkill_restart(
    pki: Pki, tmp_path: Path, webhook: WebhookReceiver
) -> None:
    vtn = VtnProcess(tmp_path / "data", pki.directory)
    try:
        banner = await vtn.start()
        assert vtn.base in banner
        bl_id, bl_secret = vtn.add_client("utility", "bl")  # while the server runs
        ven_id, ven_secret = vtn.add_client("fleet", "ven")
        listed = csip("clients", "list", "--data-dir", str(vtn.data))
        assert "utility\tbl" in listed and "fleet\tven" in listed and bl_secret not in listed
        # curl, as the README shows: Basic credentials for BL, form body for the VEN
        bl_token = (
            await vtn.curl("-u", f"{bl_id}:{bl_secret}", "-d", "grant_type=client_credentials",
                           vtn.base + "/auth/token")
        )["access_token"]  # fmt: skip
        ven_token = (
            await vtn.curl("-d", "grant_type=client_credentials", "-d", f"client_id={ven_id}",
                           "-d", f"client_secret={ven_secret}", vtn.base + "/auth/token")
        )["access_token"]  # fmt: skip
        program = await vtn.curl(
            "-H", f"Authorization: Bearer {bl_token}", "-H", "Content-Type: application/json",
            "-d", '{"programName": "peak"}', vtn.base + "/programs",
        )  # fmt: skip
        connector = aiohttp.TCPConnector(ssl=client_context(ca_file=pki.ca))
        async with aiohttp.ClientSession(connector=connector) as session:

            async def call(method: str, path: str, token: str, body: Any = None) -> Any:
                async with session.request(
                    method, vtn.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    return response.status, await response.json()

            status, _ = await call(
                "POST",
                "/subscriptions",
                ven_token,
                {
                    "clientName": "fleet",
                    "objectOperations": [
                        {
                            "objects": ["PROGRAM"],
                            "operations": ["UPDATE"],
                            "callbackUrl": webhook.url(),
                        }
                    ],
                },
            )
            assert status == 201
            webhook.status = 503  # the subscriber is down
            status, _ = await call(
                "PUT", f"/programs/{program['id']}", bl_token, {"programName": "peak-2"}
            )
            assert status == 200
            for _ in range(100):
                if webhook.refused:
                    break
                await asyncio.sleep(0.05)
            assert webhook.refused >= 1  # tried, failed, rescheduled in the outbox
            vtn.kill()  # SIGKILL: no clean shutdown, nothing flushed
            webhook.status = 200
            await vtn.start()
            notes = await webhook.wait_for(1, within=20)
            assert notes[0]["operation"] == "UPDATE"
            assert notes[0]["object"]["programName"] == "peak-2"
            # tokens issued before the restart still work (the key is in the database)
            status, programs = await call("GET", "/programs", ven_token)
            assert status == 200 and [p["programName"] for p in programs] == ["peak-2"]
            status, _ = await call("GET", "/programs", bl_token)
            assert status == 200
            csip("clients", "remove", "fleet", "--data-dir", str(vtn.data))
            status, problem = await call("GET", "/vens", "not-a-token")
            assert status == 401 and problem["status"] == 401
    finally:
        vtn.kill()


def test_clients_commands_have_help_and_usage_errors() -> None:
    for command in (["clients"], ["clients", "add"], ["clients", "list"], ["clients", "remove"]):
        result = subprocess.run(
            [*CSIP, *command, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0 and "usage: csip" in result.stdout
    result = subprocess.run(
        [*CSIP, "clients", "add", "x", "--role", "admin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "usage:" in result.stderr
