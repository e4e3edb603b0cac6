"""`csip serve --workers 2` as a user runs it: two processes on one port per listener
(SO_REUSEPORT), a write through the admin API seen at once by polls on every worker, a
worker killed with SIGKILL replaced while the other keeps serving, and SQLite refused.

Which worker answered is told by the lab-only X-Csip-Worker header (lab_worker_header)
and by the pid in the admin API's /api/status; every poll opens a new TLS connection, so
the kernel spreads them over the workers.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from lxml import etree

from csip.services.admin import admin_token
from csip.store import Store
from csip.web.lab import WORKER_HEADER

from support import Pki, client_ssl

CSIP = [sys.executable, "-m", "csip.cli"]
NS = "{urn:ieee:std:2030.5:ns}"


def test_sqlite_refuses_several_workers(tmp_path: Path, pki: Pki) -> None:
    result = subprocess.run(
        [*CSIP, "serve", "--workers", "2", "--data-dir", str(tmp_path),
         "--certs-dir", str(pki.directory), "--sep2-port", "0", "--admin-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--workers 2 needs PostgreSQL" in result.stderr
    assert "--workers 1" in result.stderr


class Workers:
    """`csip serve --workers 2` on ephemeral ports, its output in a log file."""

    def __init__(self, db: str, pki: Pki, data: Path) -> None:
        self.db, self.pki, self.data = db, pki, data
        self.log = data / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.sep2_port = self.admin_port = 0
        self.token = ""

    def spawn(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [*CSIP, "serve", "--workers", "2", "--db", self.db, "--data-dir", str(self.data),
                 "--certs-dir", str(self.pki.directory), "--sep2-port", "0", "--admin-port", "0",
                 "--vtn-port", "0"],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "CSIP_LAB_WORKER_HEADER": "true"},
            )  # fmt: skip

    async def start(self) -> str:
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "workers share each port" in text:
                break
            assert self.process.poll() is None, f"csip serve exited:\n{text}"
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"csip serve --workers 2 did not start:\n{self.log.read_text()}")
        sep2 = re.search(r"https://localhost:(\d+)/dcap", text)
        admin = re.search(r"http://127\.0\.0\.1:(\d+)/api/status", text)
        assert sep2 and admin, text
        self.sep2_port, self.admin_port = int(sep2.group(1)), int(admin.group(1))
        store = Store(self.db)
        try:
            self.token = await admin_token(store)
        finally:
            await store.close()
        return text

    def worker_pids(self) -> set[int]:
        """The live children of the parent (the workers), from /proc."""
        assert self.process is not None
        parent = self.process.pid
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                cmdline = (entry / "cmdline").read_bytes()
                if b"spawn_main" in cmdline:  # not the resource tracker
                    found.add(int(entry.name))
        return found

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any, int]:
        """One admin call on a new connection: (status, JSON, pid of the worker)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.request(
                method, f"http://127.0.0.1:{self.admin_port}{path}", json=body, headers=headers
            ) as response,
        ):
            data = await response.json() if response.content_type == "application/json" else None
            return response.status, data, int(response.headers[WORKER_HEADER])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest_asyncio.fixture(loop_scope="session")
async def workers(database_url: str, pki: Pki, tmp_path: Path) -> AsyncIterator[Workers]:
    running = Workers(database_url, pki, tmp_path / "data")
    try:
        yield running
    finally:
        running.stop()


async def poll_everywhere(
    workers: Workers, path: str, count: int = 24
) -> list[tuple[int, int, bytes]]:
    """`count` GETs of `path` by device A, each on a new mutual-TLS connection, all at once:
    (status, pid of the worker that answered, body)."""
    context = client_ssl(workers.pki, workers.pki.device_a)
    url = f"https://localhost:{workers.sep2_port}{path}"

    async def one() -> tuple[int, int, bytes]:
        connector = aiohttp.TCPConnector(ssl=context, force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url) as response,
        ):
            return response.status, int(response.headers[WORKER_HEADER]), await response.read()

    return list(await asyncio.gather(*(one() for _ in range(count))))


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def all_attr(body: bytes) -> str | None:
    return etree.fromstring(body).get("all")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_workers_one_port_every_write_seen_and_a_killed_worker_replaced(
    workers: Workers,
) -> None:
    banner = await workers.start()
    assert banner.count("csip is serving") == 1  # the banner once, from the parent
    pids = workers.worker_pids()
    assert len(pids) == 2
    # the admin listener is shared too: new connections reach both workers
    seen_admin = set()
    for _ in range(40):
        status, body, pid = await workers.admin("GET", "/api/status")
        assert status == 200 and body["pid"] == pid and body["workers"] == 2
        seen_admin.add(pid)
        if seen_admin == pids:
            break
    assert seen_admin == pids

    lfdi = workers.pki.device_a.lfdi
    # every worker caches "no EndDevice" ...
    before = await poll_everywhere(workers, "/edev")
    assert {pid for _, pid, _ in before} == pids
    assert {(status, all_attr(body)) for status, _, body in before} == {(200, "0")}
    # ... then one admin write: every worker serves the new list on the very next poll
    status, _, _ = await workers.admin("PUT", f"/api/end-devices/{lfdi}", {})
    assert status in (200, 201)
    after = await poll_everywhere(workers, "/edev")
    assert {pid for _, pid, _ in after} == pids
    assert {(status, all_attr(body)) for status, _, body in after} == {(200, "1")}
    edev = etree.fromstring(after[0][2]).find(f"{NS}EndDevice")
    assert edev is not None
    fsa_path = edev.get("href", "") + "/fsa"

    # a group membership: each worker's cached FunctionSetAssignmentsList changes at once
    first = await poll_everywhere(workers, fsa_path)
    assert {all_attr(body) for _, _, body in first} == {"0"}
    status, group, _ = await workers.admin("POST", "/api/groups", {"description": "feeder 1"})
    assert status == 201
    status, _, _ = await workers.admin(
        "POST", f"/api/groups/{group['id']}/members", {"lfdis": [lfdi]}
    )
    assert status == 200
    second = await poll_everywhere(workers, fsa_path)
    assert {pid for _, pid, _ in second} == pids
    assert {all_attr(body) for _, _, body in second} == {"1"}

    # SIGKILL one worker: polls keep succeeding, the parent starts a new one, and the new
    # worker serves what was written while it was away
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    await asyncio.sleep(0.2)
    during = await poll_everywhere(workers, fsa_path)
    assert {status for status, _, _ in during} == {200}
    assert victim not in {pid for _, pid, _ in during}
    status, other, _ = await workers.admin("POST", "/api/groups", {"description": "feeder 2"})
    assert status == 201
    status, _, _ = await workers.admin(
        "POST", f"/api/groups/{other['id']}/members", {"lfdis": [lfdi]}
    )
    assert status == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = workers.worker_pids()
        if len(current) == 2 and victim not in current:
            replies = await poll_everywhere(workers, fsa_path)
            if {pid for _, pid, _ in replies} == current:
                break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"no replacement worker answered:\n{workers.log.read_text()}")
    assert {(status, all_attr(body)) for status, _, body in replies} == {(200, "2")}
    assert "exited with code -9: starting a new one" in workers.log.read_text()

    # SIGTERM to the parent stops every worker
    assert workers.process is not None
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(30) == 0
    assert not any(running(pid) for pid in current)
