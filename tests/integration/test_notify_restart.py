"""A 2030.5 notification survives a real restart (CLARIFICATIONS "Survives a restart"): the
receiver refuses it, csip is killed with SIGKILL, started again on the same data, and the
notification arrives from the outbox."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_cli_process import ServeProcess, curl, run

from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi


class Receiver(ThreadingHTTPServer):
    refuse = True
    attempts = 0
    bodies: list[bytes]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.attempts += 1
        if self.server.refuse:
            self.send_response(503)
        else:
            self.server.bodies.append(body)
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    certs = tmp_path / "certs"
    run("certs", "init", "--dir", str(certs))
    run("certs", "device", "--oem", "demo", "--serial", "0001", "--dir", str(certs))
    server = Receiver(("127.0.0.1", 0), Handler)
    server.bodies = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server-chain.pem", certs / "server.key")
    context.load_verify_locations(certs / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED  # csip must present its certificate
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, certs
    server.shutdown()
    server.server_close()


def admin(serve: ServeProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{serve.admin_port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_pending_notification_survives_sigkill(
    receiver: tuple[Receiver, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, certs = receiver
    monkeypatch.setenv("CSIP_NOTIFICATION_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("CSIP_OUTBOX_RETRY_DELAYS", "1")
    serve = ServeProcess(tmp_path / "data", certs)
    try:
        serve.start()
        chain = (certs / "devices" / "demo-0001.pem").read_text()
        leaf = chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        lfdi = lfdi_from_cert_der(ssl.PEM_cert_to_DER_cert(leaf))
        base = f"https://localhost:{serve.sep2_port}"
        body = (
            '<EndDevice xmlns="urn:ieee:std:2030.5:ns">'
            f"<lFDI>{lfdi}</lFDI><sFDI>{sfdi_from_lfdi(lfdi)}</sFDI><changedTime>0</changedTime>"
            "</EndDevice>"
        )
        headers = curl(
            serve,
            "-i",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/sep+xml",
            "--data",
            body,
            base + "/edev",
        )
        href = next(line.split()[1] for line in headers.splitlines() if line.startswith("Location"))
        token = run("admin", "token", "--data-dir", str(serve.data)).stdout.strip()
        group = admin(serve, token, "POST", "/api/groups", {"description": "feeder"})
        admin(serve, token, "PUT", f"/api/groups/{group['id']}/members/{lfdi}")
        program = admin(
            serve,
            token,
            "POST",
            f"/api/groups/{group['id']}/programs",
            {"description": "p", "primacy": 1},
        )
        uri = f"https://127.0.0.1:{server.server_address[1]}/notify"
        subscription = (
            '<Subscription xmlns="urn:ieee:std:2030.5:ns">'
            f"<subscribedResource>/derp/{program['id']}/derc</subscribedResource><encoding>0</encoding>"
            f"<level>-S1-L1-R1</level><limit>1</limit><notificationURI>{uri}</notificationURI></Subscription>"
        )
        created = curl(
            serve,
            "-i",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/sep+xml",
            "--data",
            subscription,
            base + href + "/sub",
        )
        assert created.startswith("HTTP/1.1 201")
        now = int(admin(serve, token, "GET", "/api/clock")["now"])
        control = {"start": now + 3600, "duration": 60, "base": {"opModMaxLimW": 50}}
        (made,) = admin(
            serve, token, "POST", f"/api/programs/{program['id']}/controls", {"controls": [control]}
        )
        wait_for(lambda: server.attempts >= 1, 15)  # refused: it stays in the outbox
        serve.kill()
        server.refuse = False
        serve.start()
        wait_for(lambda: bool(server.bodies), 20)
        assert made["mrid"].encode() in server.bodies[0]
        assert b"<Notification" in server.bodies[0]
    finally:
        serve.kill()
