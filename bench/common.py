"""Helpers shared by the benchmarks (poll.py, notify.py): the C load generator, server
processes pinned to a core, CPU accounting from /proc, the admin API and a small 2030.5 client
for set-up (never for load).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
LOADGEN_SRC = HERE / "loadgen.c"
LOADGEN = OUT / "loadgen"
SERVER_CORE = "0"
CLIENT_CORE = "1"
EDEV_XML = (
    '<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI>'
    "<changedTime>0</changedTime></EndDevice>"
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the load generator --------------------------------------------------------------
def build_loadgen() -> Path:
    """Compile loadgen.c into bench/out/ unless an up-to-date binary is there."""
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return LOADGEN
    OUT.mkdir(exist_ok=True)
    cc = os.environ.get("CC", "cc")
    command = [cc, "-O2", "-Wall", "-o", str(LOADGEN), str(LOADGEN_SRC)]
    command += ["-lssl", "-lcrypto", "-lpthread"]
    log("building " + " ".join(command))
    subprocess.run(command, check=True, timeout=120)
    return LOADGEN


@dataclass(frozen=True)
class Load:
    """One load generator invocation (everything but the server port)."""

    cert: Path
    paths_file: Path
    concurrency: int
    duration: float = 0.0
    requests: int = 0
    one_pass: bool = False
    new_connection: bool = False
    resume: bool = False


def run_loadgen(
    load: Load, port: int, ca: Path, ciphers: str | None, hard_timeout: float
) -> dict[str, Any]:
    command = ["taskset", "-c", CLIENT_CORE, str(LOADGEN), "-h", "127.0.0.1", "-S", "localhost"]
    command += ["-p", str(port), "-C", str(ca), "-c", str(load.cert)]
    command += ["-n", str(load.concurrency), "-f", str(load.paths_file), "-T", str(hard_timeout)]
    if load.one_pass:
        command.append("-P")
    elif load.requests:
        command += ["-N", str(load.requests)]
    else:
        command += ["-t", str(load.duration)]
    if load.new_connection:
        command.append("-r")
        if load.resume:
            command.append("-s")
    if ciphers:
        command += ["-Z", ciphers]
    done = subprocess.run(command, capture_output=True, text=True, timeout=hard_timeout + 60)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


# ---- processes ---------------------------------------------------------------------
@dataclass
class Proc:
    """A server subprocess pinned to the server core; ``pid`` is the server itself."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    paused: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads), from /proc/PID/stat."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def pause(self) -> None:
        if not self.paused and self.popen.poll() is None:
            os.kill(self.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def core_ticks(core: str) -> tuple[int, int]:
    """(busy, steal) jiffies of one CPU from /proc/stat: who else used the server's core."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
            return user + nice + system + irq + softirq, steal
    return 0, 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def csip_bin() -> str:
    local = Path(sys.executable).parent / "csip"
    if local.exists():
        return str(local)
    found = shutil.which("csip")
    if found is None:
        raise SystemExit("csip is not installed in this environment (pip install -e .)")
    return found


def spawn(
    name: str,
    command: list[str],
    workdir: Path,
    core: str = SERVER_CORE,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start ``command`` pinned to ``core``, output to ``workdir/name.log``; ``env`` is added
    to this process's environment."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            ["taskset", "-c", core, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )
    return Proc(name, popen, log_path)


def wait_until(check: Any, proc: Proc, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while {what}:\n{proc.tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"timed out {what}:\n{proc.tail()}")


# ---- talking to csip ---------------------------------------------------------------
@dataclass
class Admin:
    port: int
    token: str

    def call(self, method: str, path: str, body: Any = None, timeout: float = 300) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (our URL)
            raw = response.read()
        return json.loads(raw) if raw else None


class Sep2Client:
    """A plain keep-alive Python client: only for set-up and capturing bytes, never load."""

    def __init__(self, port: int, ca: Path, cert: Path) -> None:
        from csip.web.tls import client_context

        self.context = client_context(ca_file=ca, cert_chain_file=cert)
        self.port = port
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=60)

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        headers = {"Accept": "application/sep+xml"}
        if body is not None:
            headers["Content-Type"] = "application/sep+xml"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = self._connect()
                return response.status, data, response
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = self._connect()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def capture(client: Sep2Client, paths: list[str], anomalies: list[str]) -> dict[str, bytes]:
    bodies: dict[str, bytes] = {}
    bad = 0
    for path in paths:
        status, data, _ = client.request("GET", path)
        if status != 200:
            bad += 1
            if bad <= 5:
                anomalies.append(f"GET {path} answered {status} while capturing bodies")
        bodies[path] = data
    return bodies


def random_lfdis(count: int) -> list[str]:
    return [secrets.token_hex(20).upper() for _ in range(count)]


@contextlib.contextmanager
def terminate_on_signal() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so the cleanup below always runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
