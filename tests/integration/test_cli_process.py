"""`csip` as a user runs it: real processes, curl over mutual TLS, a SIGKILL restart.

This is the README's `make run` experience: certs, serve, the curl walk of /dcap, the admin
token from another shell, and state that survives a hard kill.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CSIP = [sys.executable, "-m", "csip.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CSIP, *args], capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"csip {' '.join(args)} failed: {result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_command_has_help() -> None:
    for command in (
        [],
        ["serve"],
        ["certs"],
        ["certs", "init"],
        ["certs", "device"],
        ["certs", "aggregator"],
        ["certs", "show"],
        ["admin"],
        ["admin", "token"],
        ["schemas", "fetch"],
    ):
        result = run(*command, "--help")
        assert result.returncode == 0
        assert "usage: csip" in result.stdout


def test_usage_errors_exit_2() -> None:
    for args in (["bogus"], ["serve", "--sep2-port", "many"], ["certs", "device"], []):
        result = run(*args, check=False)
        assert result.returncode == 2, args
        assert "usage:" in result.stderr


def test_missing_pki_and_schemas_name_the_fix(tmp_path: Path) -> None:
    result = run(
        "serve", "--data-dir", str(tmp_path), "--certs-dir", str(tmp_path / "none"), check=False
    )
    assert result.returncode == 1
    assert "csip certs init" in result.stderr
    empty = tmp_path / "xsd"
    empty.mkdir()
    result = run("serve", "--data-dir", str(tmp_path), "--schema-dir", str(empty), check=False)
    assert result.returncode == 1
    assert "sep.xsd is missing" in result.stderr and "make schemas" in result.stderr


class ServeProcess:
    def __init__(self, data: Path, certs: Path) -> None:
        self.data, self.certs = data, certs
        self.sep2_port, self.admin_port = free_port(), free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start `csip serve`, its output going to a log file; return the banner."""
        self.data.mkdir(parents=True, exist_ok=True)
        log = self.data / f"serve-{time.monotonic_ns()}.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [
                    *CSIP, "serve", "--data-dir", str(self.data), "--certs-dir", str(self.certs),
                    "--sep2-port", str(self.sep2_port), "--admin-port", str(self.admin_port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            banner = log.read_text()
            if "Ctrl-C stops" in banner:
                return banner
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"csip serve did not start:\n{log.read_text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[ServeProcess]:
    certs = tmp_path / "certs"
    run("certs", "init", "--dir", str(certs))
    run("certs", "device", "--oem", "demo", "--serial", "0001", "--dir", str(certs))
    serve = ServeProcess(tmp_path / "data", certs)
    yield serve
    serve.kill()


def curl(serve: ServeProcess, *args: str) -> str:
    assert shutil.which("curl"), "curl is needed for the user-level test"
    cert = serve.certs / "devices" / "demo-0001-combined.pem"
    command = ["curl", "-sS", "--cacert", str(serve.certs / "ca.pem"), "--cert", str(cert), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout


def test_serve_curl_walk_and_sigkill_restart(installation: ServeProcess) -> None:
    serve = installation
    banner = serve.start()
    walk = re.search(r"curl --cacert \S+ --cert \S+ https://localhost:\d+/dcap", banner)
    assert walk is not None, banner
    # the console's URL and how to create its first operator (issue 13): the URL answers
    console = re.search(r"console:\s+(http://\S+/console)\s", banner)
    assert console is not None, banner
    assert "csip operators add NAME --role operator" in banner
    login = curl(serve, "-L", console[1])
    assert "Log in" in login and 'name="password"' in login
    base = f"https://localhost:{serve.sep2_port}"
    assert 'href="/dcap"' in curl(serve, base + "/dcap")
    assert 'all="0"' in curl(serve, base + "/edev")
    shown = run("certs", "show", str(serve.certs / "devices" / "demo-0001.pem")).stdout
    lfdi = re.search(r"lfdi: ([0-9A-F]{40})", shown)
    sfdi = re.search(r"sfdi: (\d+)", shown)
    assert lfdi and sfdi
    body = (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns">'
        f"<lFDI>{lfdi[1]}</lFDI><sFDI>{sfdi[1]}</sFDI><changedTime>0</changedTime></EndDevice>"
    )
    headers = curl(
        serve, "-i", "-X", "POST", "-H", "Content-Type: application/sep+xml", "--data", body,
        base + "/edev",
    )  # fmt: skip
    assert headers.startswith("HTTP/1.1 201")
    location = re.search(r"Location: (\S+)", headers)
    assert location is not None
    href = location[1]
    assert f"<lFDI>{lfdi[1]}</lFDI>" in curl(serve, base + href)
    assert "FunctionSetAssignmentsList" in curl(serve, base + href + "/fsa")

    token = run("admin", "token", "--data-dir", str(serve.data)).stdout.strip()
    assert len(token) >= 32

    serve.kill()  # SIGKILL: no clean shutdown
    serve.start()
    assert f"<lFDI>{lfdi[1]}</lFDI>" in curl(serve, base + href)
    assert run("admin", "token", "--data-dir", str(serve.data)).stdout.strip() == token
    rotated = run("admin", "token", "--rotate", "--data-dir", str(serve.data)).stdout.strip()
    assert rotated != token
    admin = f"http://127.0.0.1:{serve.admin_port}/api/status"
    old = subprocess.run(
        ["curl", "-s", "-o", os.devnull, "-w", "%{http_code}",
         "-H", f"Authorization: Bearer {token}", admin],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    new = subprocess.run(
        ["curl", "-s", "-H", f"Authorization: Bearer {rotated}", admin],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert old == "401"
    assert '"end_devices": 1' in new
