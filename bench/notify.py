"""Notification benchmark: one DERControl fanned out to 10,000 subscribers over mutual TLS.

Everything happens on loopback, in a temporary directory that is removed at the end:

1. make a test PKI, start ``csip serve`` pinned to core 0 with
   ``CSIP_NOTIFICATION_ALLOW_PRIVATE=true`` and ``CSIP_OUTBOX_RETRY_DELAYS=1,5``;
2. fleet: one aggregator manages ``--devices`` EndDevices (admin bulk endpoint), all in one
   group with one DERProgram; group membership is timed both one PUT per device (a sample) and
   with the bulk endpoint; every device subscribes (as its aggregator, POST /edev/{id}/sub) to
   the program's DERControlList, notificationURIs spread round-robin over ``--receivers``
   receivers;
3. receivers: each an aiohttp HTTPS server in its own process pinned to core 1 (this file,
   ``--receiver``), on 127.0.0.1 and its own port (the PKI's server certificate names
   127.0.0.1, and csip checks the receiver's hostname), requiring a client certificate from the
   test SERCA; each notification is answered 204 and its arrival time recorded (CLOCK_MONOTONIC,
   shared by all processes). A plain-HTTP control port per receiver gives the counts;
4. cases, each one new DERControl for the group (admin POST), timed from the POST until the
   last notification arrived, with every subscriber checked for exactly one notification:
     keepalive   receivers keep connections open (csip's pooled connections are reused)
     close       receivers close the connection after every answer (one TLS handshake each)
     underload   the C load generator polls /dcap and one device's resources with the
                 aggregator certificate (keep-alive, as poll.py does) while the notifications
                 go out; its req/s is compared with idle runs of the same load before and after;
5. print a table, the target beside the figures (never asserted), and one JSON line.

csip's CPU per notification comes from /proc/PID/stat (utime + stime) around each case; the
receivers' CPU likewise, so a receiver-bound run shows. ``--profile`` samples csip with py-spy
during one more keep-alive fan-out and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    CLIENT_CORE,
    SERVER_CORE,
    Admin,
    Load,
    Proc,
    build_loadgen,
    core_ticks,
    csip_bin,
    free_port,
    random_lfdis,
    run_loadgen,
    spawn,
    terminate_on_signal,
    wait_until,
)

TARGET_S = 10.0  # "all delivered in under 10 s on this 2-core machine"
SUB_XML = (
    '<Subscription xmlns="urn:ieee:std:2030.5:ns"><subscribedResource>{resource}'
    "</subscribedResource><encoding>0</encoding><level>-S1-L1-R1</level><limit>1</limit>"
    "<notificationURI>{uri}</notificationURI></Subscription>"
)
CASES = ("keepalive", "close", "underload")


def log(message: str) -> None:
    print(f"[notify] {message}", file=sys.stderr, flush=True)


# ---- the receiver (a separate process: python notify.py --receiver ...) ---------------
def receiver_main(port: int, control_port: int, certs_dir: Path) -> None:
    """An HTTPS notification receiver: 204 to every POST, arrivals kept for the control port."""
    from aiohttp import web

    from csip.web.tls import server_context

    context = server_context(
        ca_file=certs_dir / "ca.pem",
        cert_chain_file=certs_dir / "server-chain.pem",
        key_file=certs_dir / "server.key",
    )
    arrivals: list[tuple[str, float]] = []
    peers: set[tuple[Any, ...]] = set()
    state = {"close": False, "bad": 0}

    async def notification(request: web.Request) -> web.Response:
        body = await request.read()
        if b"Notification" not in body or b"DERControlList" not in body:
            state["bad"] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            peers.add(tuple(peer))
        response = web.Response(status=204)
        if state["close"]:
            response.force_close()
        arrivals.append((request.match_info["ident"], time.monotonic()))
        return response

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"count": len(arrivals)})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"arrivals": arrivals, "connections": len(peers), "bad_bodies": state["bad"]}
        )

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        peers.clear()
        state["bad"] = 0
        state["close"] = request.query.get("close") == "1"
        return web.json_response({"close": state["close"]})

    async def run() -> None:
        tls_app = web.Application()
        tls_app.router.add_post("/n/{ident}", notification)
        control = web.Application()
        control.router.add_get("/count", count)
        control.router.add_get("/stats", stats)
        control.router.add_post("/reset", reset)
        runners = []
        for app, p, ctx in ((tls_app, port, context), (control, control_port, None)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", p, ssl_context=ctx, backlog=1024).start()
            runners.append(runner)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"ready {port}", flush=True)
        await stop.wait()
        for runner in runners:
            await runner.cleanup()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


@dataclass
class Receiver:
    proc: Proc
    port: int
    control_port: int

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}", method=method, data=b""
        )
        if method == "GET":
            request.data = None
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (our URL)
            return json.loads(response.read())


# ---- the benchmark -----------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    receivers: list[Receiver] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, Any] = field(default_factory=dict)
    poll_load: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)  # receiver path ident -> device href
    control_start: int = 0
    probe_start: int = 0
    probe_pid: int = 0

    # ---- set-up ---------------------------------------------------------------
    def start(self) -> None:
        args = self.args
        csip = self.csip = csip_bin()
        self.pki = self.workdir / "pki"
        self.ca = self.pki / "ca.pem"
        subprocess.run(
            [csip, "certs", "init", "--dir", str(self.pki)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        agg = subprocess.run(
            [csip, "certs", "aggregator", "bench-agg", "--dir", str(self.pki)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        self.agg_lfdi = next(
            line.split(": ", 1)[1] for line in agg.splitlines() if line.startswith("lfdi")
        )
        self.agg_cert = self.pki / "aggregators" / "bench-agg-combined.pem"
        self.data = self.workdir / "data"
        db = ["--data-dir", str(self.data)]
        self.sep2_port, admin_port = free_port(), free_port()
        env = {
            "CSIP_NOTIFICATION_ALLOW_PRIVATE": "true",
            "CSIP_OUTBOX_RETRY_DELAYS": args.retry_delays,
        }
        self.server = spawn(
            "csip",
            [
                *(csip, "serve", *db, "--certs-dir", str(self.pki)),
                *("--sep2-port", str(self.sep2_port), "--admin-port", str(admin_port)),
                *("--vtn-port", "0"),
            ],
            self.workdir,
            env=env,
        )
        self.procs.append(self.server)
        token = subprocess.run(
            [csip, "admin", "token", *db], check=True, capture_output=True, text=True, timeout=60
        ).stdout.strip()
        self.admin = Admin(admin_port, token)
        wait_until(lambda: self.admin.call("GET", "/api/status"), self.server, 60, "starting csip")
        for i in range(args.receivers):
            port, control = free_port(), free_port()
            command = [sys.executable, str(Path(__file__).resolve()), "--receiver"]
            command += ["--port", str(port), "--control-port", str(control)]
            command += ["--certs-dir", str(self.pki)]
            proc = spawn(f"receiver-{i}", command, self.workdir, core=CLIENT_CORE)
            self.procs.append(proc)
            self.receivers.append(Receiver(proc, port, control))
        for r in self.receivers:
            wait_until(
                lambda r=r: "ready" in r.proc.log_path.read_text(), r.proc, 60, "starting receiver"
            )

    def fleet(self) -> None:
        args, admin = self.args, self.admin
        admin.call("POST", "/api/aggregators", {"name": "bench-agg"})
        admin.call("PUT", f"/api/aggregators/bench-agg/certificates/{self.agg_lfdi}", {})
        lfdis: list[str] = []
        self.hrefs: list[str] = []
        t0 = time.perf_counter()
        for offset in range(0, args.devices, args.batch):
            batch = random_lfdis(min(args.batch, args.devices - offset))
            answer = admin.call(
                "POST",
                "/api/end-devices",
                [{"lfdi": lfdi, "aggregator": "bench-agg"} for lfdi in batch],
            )
            lfdis.extend(batch)
            self.hrefs.extend(item["href"] for item in answer["items"])
        register_s = time.perf_counter() - t0
        log(f"registered {len(self.hrefs)} EndDevices in {register_s:.2f} s")

        group = admin.call("POST", "/api/groups", {"description": "fleet"})
        gid = group["id"]
        sample = min(args.member_sample, len(lfdis))
        t0 = time.perf_counter()
        for lfdi in lfdis[:sample]:
            admin.call("PUT", f"/api/groups/{gid}/members/{lfdi}", {})
        put_s = time.perf_counter() - t0
        rest = lfdis[sample:]
        bulk_s, bulk = 0.0, "not needed"
        if rest:
            t0 = time.perf_counter()
            try:
                admin.call("POST", f"/api/groups/{gid}/members", {"lfdis": rest})
                bulk = "POST /api/groups/{gid}/members"
            except urllib.error.HTTPError as exc:
                if exc.code not in (404, 405):
                    raise
                bulk = "absent: one PUT per device"
                for lfdi in rest:
                    admin.call("PUT", f"/api/groups/{gid}/members/{lfdi}", {})
            bulk_s = time.perf_counter() - t0
        put_rate = sample / put_s if put_s else None
        log(
            f"group membership: {sample} PUTs in {put_s:.2f} s ({put_rate or 0:.0f}/s), "
            f"{len(rest)} more in {bulk_s:.2f} s ({bulk})"
        )
        program = admin.call(
            "POST", f"/api/groups/{gid}/programs", {"description": "p", "primacy": 1}
        )
        self.pid = program["id"]
        self.resource = f"/derp/{self.pid}/derc"
        probe = {"description": "probe", "primacy": 2}
        self.probe_pid = admin.call("POST", f"/api/groups/{gid}/programs", probe)["id"]

        t0 = time.perf_counter()
        failures = asyncio.run(self.subscribe())
        subscribe_s = time.perf_counter() - t0
        log(f"{len(self.hrefs)} subscriptions in {subscribe_s:.2f} s ({failures} failed)")
        if failures:
            self.anomalies.append(f"{failures} of {len(self.hrefs)} subscriptions were refused")
        self.setup = {
            "devices": len(self.hrefs),
            "register_s": round(register_s, 2),
            "register_per_s": round(len(self.hrefs) / register_s, 1),
            "member_put_sample": sample,
            "member_put_s": round(put_s, 2),
            "member_put_per_s": round(put_rate, 1) if put_rate else None,
            "member_put_10k_estimate_s": round(10_000 / put_rate, 1) if put_rate else None,
            "member_bulk": bulk,
            "member_bulk_count": len(rest),
            "member_bulk_s": round(bulk_s, 2),
            "subscribe_s": round(subscribe_s, 2),
            "subscribe_per_s": round(len(self.hrefs) / subscribe_s, 1),
            "receivers": len(self.receivers),
        }

    async def subscribe(self) -> int:
        """Every device subscribes to the program's DERControlList (set-up, not load)."""
        import aiohttp

        from csip.web.tls import client_context

        context = client_context(ca_file=self.ca, cert_chain_file=self.agg_cert)
        connector = aiohttp.TCPConnector(ssl=context, limit=16)
        base = f"https://localhost:{self.sep2_port}"
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        for i, href in enumerate(self.hrefs):
            queue.put_nowait((i, href))
        failures = 0

        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal failures
                while not queue.empty():
                    i, href = queue.get_nowait()
                    receiver = self.receivers[i % len(self.receivers)]
                    ident = href.rsplit("/", 1)[1]
                    uri = f"https://127.0.0.1:{receiver.port}/n/{ident}"
                    self.expected[f"{receiver.port}/{ident}"] = href
                    body = SUB_XML.format(resource=self.resource, uri=uri).encode()
                    async with session.post(
                        f"{base}{href}/sub",
                        data=body,
                        headers={"Content-Type": "application/sep+xml"},
                    ) as response:
                        await response.read()
                        if response.status != 201:
                            failures += 1
                            if failures <= 3:
                                self.anomalies.append(f"POST {href}/sub answered {response.status}")

            await asyncio.gather(*(worker() for _ in range(16)))
        return failures

    # ---- one fan-out ----------------------------------------------------------
    def post_control(self) -> float:
        """Publish one DERControl for the group; returns the monotonic time of the POST."""
        now = int(self.admin.call("GET", "/api/clock")["now"])
        # Each case's control is a day after the previous one: no overlap, no supersession.
        self.control_start = max(self.control_start + 86_400, now + 86_400)
        body = {
            "controls": [
                {"start": self.control_start, "duration": 600, "base": {"opModMaxLimW": 5000}}
            ]
        }
        t0 = time.monotonic()
        self.admin.call("POST", f"/api/programs/{self.pid}/controls", body)
        return t0

    def fanout(
        self, name: str, close: bool, on_first: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Reset the receivers, publish a control, wait for every notification, check them.

        ``on_first`` is called once the first notification has arrived (delivery under way)."""
        n = len(self.hrefs)
        for r in self.receivers:
            r.call("POST", f"/reset?close={1 if close else 0}")
        cpu0 = self.server.cpu_seconds()
        rcpu0 = sum(r.proc.cpu_seconds() for r in self.receivers)
        busy0 = {c: core_ticks(c)[0] for c in (SERVER_CORE, CLIENT_CORE)}
        t0 = self.post_control()
        post_s = time.monotonic() - t0
        deadline = t0 + self.args.timeout
        total = 0
        while time.monotonic() < deadline:
            total = sum(r.call("GET", "/count")["count"] for r in self.receivers)
            if total >= n:
                break
            if total and on_first is not None:
                on_first()
                on_first = None
            if not self.server.alive():
                raise RuntimeError(f"csip exited during {name}:\n{self.server.tail()}")
            time.sleep(0.05)
        waited = time.monotonic() - t0
        cpu1 = self.server.cpu_seconds()
        rcpu1 = sum(r.proc.cpu_seconds() for r in self.receivers)
        busy1 = {c: core_ticks(c)[0] for c in (SERVER_CORE, CLIENT_CORE)}
        # Late duplicates (a retry of a delivered notification) would come after a retry delay.
        time.sleep(self.args.settle)
        arrivals: list[float] = []
        per_sub: Counter[str] = Counter()
        connections = bad = 0
        for r in self.receivers:
            stats = r.call("GET", "/stats")
            connections += stats["connections"]
            bad += stats["bad_bodies"]
            for ident, t in stats["arrivals"]:
                per_sub[f"{r.port}/{ident}"] += 1
                arrivals.append(t - t0)
        unexpected = sum(c for k, c in per_sub.items() if k not in self.expected)
        missing = sum(1 for k in self.expected if per_sub.get(k, 0) == 0)
        duplicates = sum(c - 1 for k, c in per_sub.items() if k in self.expected and c > 1)
        arrivals.sort()
        last = arrivals[-1] if arrivals else float("nan")
        complete = missing == 0
        tick = os.sysconf("SC_CLK_TCK")
        elapsed = max(last if complete else waited, 1e-9)
        csip_cpu = cpu1 - cpu0
        result: dict[str, Any] = {
            "notifications": n,
            "received": len(arrivals),
            "missing": missing,
            "duplicates": duplicates,
            "unexpected": unexpected,
            "bad_bodies": bad,
            "admin_post_s": round(post_s, 3),
            "first_s": round(arrivals[0], 3) if arrivals else None,
            "max_gap_s": round(max((b - a for a, b in itertools.pairwise(arrivals)), default=0), 3),
            "p50_s": round(pct(arrivals, 0.5), 3),
            "p90_s": round(pct(arrivals, 0.9), 3),
            "last_s": round(last, 3) if complete else None,
            "per_s": round(n / elapsed, 1) if complete else None,
            "connections": connections,
            "csip_cpu_s": round(csip_cpu, 2),
            "csip_cpu_us_per_notification": round(csip_cpu * 1e6 / max(len(arrivals), 1), 1),
            "csip_busy_share": round(csip_cpu / elapsed, 3),
            "receivers_cpu_s": round(rcpu1 - rcpu0, 2),
            "receivers_busy_share": round((rcpu1 - rcpu0) / elapsed, 3),
            "core0_busy_share": round(
                (busy1[SERVER_CORE] - busy0[SERVER_CORE]) / tick / elapsed, 3
            ),
            "core1_busy_share": round(
                (busy1[CLIENT_CORE] - busy0[CLIENT_CORE]) / tick / elapsed, 3
            ),
            "close": close,
            "t0": t0,
            "_arrivals": arrivals,
        }
        result["core0_other_share"] = round(
            max(0.0, result["core0_busy_share"] - result["csip_busy_share"]), 3
        )
        log(
            f"{name}: {len(arrivals)}/{n} in "
            f"{result['last_s'] if complete else f'>{waited:.1f}'} s, "
            f"{result['per_s']}/s, csip CPU {csip_cpu:.2f} s, {connections} connections"
        )
        if missing or duplicates or unexpected or bad:
            self.anomalies.append(
                f"{name}: {missing} subscribers missing, {duplicates} duplicates, "
                f"{unexpected} unexpected, {bad} bodies without a DERControlList "
                f"(of {n}, after waiting {waited:.1f} s + {self.args.settle} s)"
            )
        if result["core0_other_share"] > 0.1:
            self.anomalies.append(
                f"{name}: core {SERVER_CORE} not exclusive (other processes "
                f"{result['core0_other_share']:.0%}): trust csip CPU us/notification over "
                "notifications/s"
            )
        if result["receivers_busy_share"] > 0.6 or (
            result["core1_busy_share"] > 0.9 and result["receivers_busy_share"] > 0.3
        ):
            self.anomalies.append(
                f"{name}: the receivers took {result['receivers_busy_share']:.0%} of core "
                f"{CLIENT_CORE} (core busy {result['core1_busy_share']:.0%}): the figure may be "
                "receiver-bound"
            )
        self.outbox_check(name)
        return result

    def outbox_check(self, name: str) -> None:
        """Rows still pending, failed or tried more than once (read-only, csip's SQLite)."""
        db = self.data / "csip.db"
        if not db.exists():
            return
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT sum(delivered_at IS NULL AND failed_at IS NULL), "
                "sum(failed_at IS NOT NULL), sum(attempts > 1) FROM outbox WHERE kind = 'sep2'"
            ).fetchone()
        pending, failed, retried = (int(v or 0) for v in row)
        self.cases.setdefault("_outbox", {})[name] = {
            "pending": pending,
            "failed": failed,
            "retried": retried,
        }
        if pending or failed or retried:
            self.anomalies.append(
                f"{name}: outbox after the run: {pending} pending, {failed} failed, "
                f"{retried} delivered after a retry (all cases so far)"
            )

    # ---- poll load ------------------------------------------------------------
    def poll_paths(self) -> Path:
        href = self.hrefs[0]
        path = self.workdir / "poll.paths"
        path.write_text("".join(p + "\n" for p in ("/dcap", href, f"{href}/fsa")))
        return path

    def loadgen(self, duration: float) -> dict[str, Any]:
        load = Load(self.agg_cert, self.poll_paths(), self.args.concurrency, duration)
        cpu0 = self.server.cpu_seconds()
        started = time.monotonic()
        result = run_loadgen(load, self.sep2_port, self.ca, None, duration + 60)
        cpu = self.server.cpu_seconds() - cpu0
        result["started_s"] = started
        result["cpu_us_per_req"] = round(cpu * 1e6 / max(result["requests"], 1), 1)
        result["csip_busy_share"] = round(cpu / max(result["elapsed_s"], 1e-9), 3)
        if result["errors"] or result["non2xx"]:
            self.anomalies.append(
                f"poll load: {result['non2xx']} non-2xx, {result['errors']} errors "
                f"of {result['requests']}"
            )
        return result

    def probe_post(self) -> float:
        """Seconds for an admin write that notifies nobody (a control in the probe program)."""
        now = int(self.admin.call("GET", "/api/clock")["now"])
        self.probe_start = max(self.probe_start + 86_400, now + 86_400)
        body = {"controls": [{"start": self.probe_start, "duration": 60, "base": {}}]}
        t0 = time.monotonic()
        self.admin.call("POST", f"/api/programs/{self.probe_pid}/controls", body)
        return time.monotonic() - t0

    def underload(self, duration: float) -> dict[str, Any]:
        """Poll load idle; the same load started once a fan-out is under way; idle again.

        Also times an admin write that notifies nobody, idle and in the middle of the idle
        poll load (a write competes with the poll hot path for the event loop and the GIL)."""
        probe_idle = self.probe_post()
        box: dict[str, Any] = {}
        probe = threading.Timer(duration / 3, lambda: box.update(probe_load=self.probe_post()))
        probe.start()
        idle_before = self.loadgen(duration)
        probe.join(duration + 120)
        log(
            f"poll load idle: {idle_before['rps']:.0f} req/s; admin write {probe_idle:.3f} s "
            f"idle, {box.get('probe_load', float('nan')):.3f} s under poll load"
        )
        load = Load(self.agg_cert, self.poll_paths(), self.args.concurrency, duration)

        def run() -> None:
            box["started"] = time.monotonic()
            cpu0 = self.server.cpu_seconds()
            box["result"] = r = run_loadgen(load, self.sep2_port, self.ca, None, duration + 60)
            cpu = self.server.cpu_seconds() - cpu0
            r["csip_busy_share"] = round(cpu / max(r["elapsed_s"], 1e-9), 3)

        thread = threading.Thread(target=run)
        result = self.fanout("underload", close=False, on_first=thread.start)
        if thread.ident is not None:
            thread.join(duration + 120)
        loaded = box.get("result")
        idle_after = self.loadgen(duration)
        log(f"poll load idle again: {idle_after['rps']:.0f} req/s")
        result["admin_write_idle_s"] = round(probe_idle, 3)
        result["admin_write_under_poll_s"] = (
            round(box["probe_load"], 3) if "probe_load" in box else None
        )
        if loaded is None:
            self.anomalies.append("underload: the load generator gave no result")
            return result
        # Which share of the load window had notifications going out, and how many went out.
        start = box["started"] - result["t0"]
        window = (start, start + loaded["elapsed_s"])
        arrivals = result["_arrivals"]
        inside = [a for a in arrivals if window[0] <= a <= window[1]]
        span = (arrivals[0], arrivals[-1]) if arrivals else (0.0, 0.0)
        overlap = max(0.0, min(window[1], span[1]) - max(window[0], span[0]))
        idle_rps = statistics.mean([idle_before["rps"], idle_after["rps"]])
        elapsed = max(loaded["elapsed_s"], 1e-9)

        def brief(r: dict[str, Any]) -> dict[str, Any]:
            keys = ("rps", "p50_ms", "p99_ms", "requests", "non2xx", "errors", "cpu_us_per_req")
            out = {k: r.get(k) for k in keys}  # cpu_us_per_req: idle runs only
            out["client_cpu_share"] = round(r["client_cpu_s"] / max(r["elapsed_s"], 1e-9), 3)
            out["csip_busy_share"] = r.get("csip_busy_share")
            return out

        idle_p99 = statistics.mean([idle_before["p99_ms"], idle_after["p99_ms"]])
        self.poll_load = {
            "paths": "/dcap, /edev/{id}, /edev/{id}/fsa (aggregator certificate, keep-alive)",
            "concurrency": self.args.concurrency,
            "duration_s": duration,
            "idle_before": brief(idle_before),
            "during": brief(loaded),
            "idle_after": brief(idle_after),
            "ratio": round(loaded["rps"] / idle_rps, 3) if idle_rps else None,
            "p99_ratio": round(loaded["p99_ms"] / idle_p99, 2) if idle_p99 else None,
            "overlap_share": round(overlap / elapsed, 3),
            "notifications_in_window": len(inside),
            "notifications_per_s_in_window": round(len(inside) / elapsed, 1),
            "notifications_per_s_idle": (self.cases.get("keepalive") or {}).get("per_s"),
            "admin_write_idle_s": result["admin_write_idle_s"],
            "admin_write_under_poll_s": result["admin_write_under_poll_s"],
        }
        idle_busy = min(idle_before["csip_busy_share"], idle_after["csip_busy_share"])
        if idle_busy < 0.9:
            self.anomalies.append(
                f"underload: csip was only {idle_busy:.0%} busy during an idle poll run (the load "
                f"generator on core {CLIENT_CORE} did not saturate it: other processes there?), "
                "so the during/idle req/s ratio does not measure csip's hot path"
            )
        if self.poll_load["overlap_share"] < 0.9:
            self.anomalies.append(
                f"underload: notifications went out during only "
                f"{self.poll_load['overlap_share']:.0%} of the loaded poll window"
            )
        return result

    # ---- profile --------------------------------------------------------------
    def profiled(self) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            self.anomalies.append("--profile: py-spy not found (pip install py-spy)")
            return
        out = self.workdir / "profile.txt"
        # Not pinned: on core 1 it would starve behind the receivers and miss samples.
        command = [spy, "record", "--format", "raw", "--nonblocking", "--threads"]
        command += ["-r", "200", "-p", str(self.server.pid), "-o", str(out)]
        spy_proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        try:
            time.sleep(1.0)
            self.cases["keepalive-profiled"] = self.fanout("keepalive-profiled", close=False)
        finally:
            spy_proc.send_signal(signal.SIGINT)
            try:
                spy_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait(timeout=10)
        if not out.exists():
            self.anomalies.append("--profile: py-spy wrote nothing (ptrace not permitted?)")
            return
        self.profile = summarize_profile(out)
        if self.args.profile:
            shutil.copy(out, self.args.profile)
            self.profile["file"] = str(self.args.profile)

    def run(self) -> dict[str, Any]:
        self.start()
        self.fleet()
        cases = self.args.cases
        if "keepalive" in cases:
            self.cases["keepalive"] = self.fanout("keepalive", close=False)
        if "close" in cases:
            self.cases["close"] = self.fanout("close", close=True)
        if "underload" in cases:
            # The loaded run must end before the fan-out does: half the keep-alive fan-out.
            keep = self.cases.get("keepalive") or {}
            spread = (keep.get("last_s") or 10.0) - (keep.get("first_s") or 0.0)
            duration = self.args.load_duration or max(2.0, min(spread / 2, 10.0))
            self.cases["underload"] = self.underload(round(duration, 1))
        if self.args.profile:
            self.profiled()
        for case in self.cases.values():
            case.pop("_arrivals", None)
            case.pop("t0", None)
        if not self.server.alive():
            self.anomalies.append(f"csip exited during the run:\n{self.server.tail()}")
        return self.report()

    def report(self) -> dict[str, Any]:
        targets = []
        for name in ("keepalive", "close", "underload"):
            case = self.cases.get(name)
            if not case:
                continue
            last = case["last_s"]
            targets.append(
                {
                    "target": f"{name}: all {case['notifications']} delivered in under "
                    f"{TARGET_S:g} s",
                    "value": f"{last} s" if last is not None else "not all delivered",
                    "meets": last is not None and last < TARGET_S,
                }
            )
        if self.poll_load:
            targets.append(
                {
                    "target": "poll hot path unaffected meanwhile (req/s during / idle >= 0.9)",
                    "value": f"ratio {self.poll_load['ratio']}, p99 x{self.poll_load['p99_ratio']}",
                    "meets": (self.poll_load["ratio"] or 0) >= 0.9,
                }
            )
        return {
            "config": {
                "devices": self.args.devices,
                "receivers": self.args.receivers,
                "retry_delays": self.args.retry_delays,
                "server_core": SERVER_CORE,
                "receiver_core": CLIENT_CORE,
                "loadgen_core": CLIENT_CORE,
                "db": "sqlite",
            },
            "setup": self.setup,
            "cases": self.cases,
            "poll_load": self.poll_load,
            "profile": self.profile,
            "targets": targets,
            "anomalies": self.anomalies,
        }


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks -> top functions by self and inclusive samples.

    The aiosqlite worker thread waiting for work (``tx.get()``) is counted as idle and left
    out; shares are of the busy samples (event loop thread + database thread). SQLAlchemy runs
    its sync ORM code in greenlets, whose stacks py-spy shows without the event loop above
    them: ``roots`` gives the share of each outermost frame (``<module>`` = the event loop)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    busy = idle = db_thread = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].startswith("_connection_worker_thread") and "core.py:59)" in frames[-1]:
            idle += count
            continue
        busy += count
        roots[frames[0]] += count
        if any(f.startswith("_connection_worker_thread") for f in frames):
            db_thread += count
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(c / max(busy, 1), 3)) for f, c in counter.most_common(top)]

    return {
        "samples": busy,
        "idle_samples": idle,
        "db_thread_share": round(db_thread / max(busy, 1), 3),
        "self": share(own),
        "inclusive": share(incl),
        "roots": share(roots)[:8],
    }


def print_table(result: dict[str, Any]) -> None:
    cfg, setup = result["config"], result["setup"]
    print()
    print(
        f"csip notification benchmark: {cfg['devices']} subscriptions over {cfg['receivers']} "
        f"receivers, {cfg['db']}, csip on core {cfg['server_core']}, receivers and load "
        f"generator on core {cfg['receiver_core']}"
    )
    if setup:
        print(
            f"set-up: {setup['devices']} EndDevices in {setup['register_s']} s "
            f"({setup['register_per_s']}/s); group membership one PUT per device "
            f"{setup['member_put_per_s']}/s ({setup['member_put_sample']} PUTs, 10,000 would "
            f"take ~{setup['member_put_10k_estimate_s']} s), the other "
            f"{setup['member_bulk_count']} via {setup['member_bulk']} in "
            f"{setup['member_bulk_s']} s; subscriptions {setup['subscribe_per_s']}/s"
        )
    header = (
        f"{'case':<20} {'recv':>6} {'miss':>5} {'dup':>4} {'first s':>8} {'p50 s':>7} "
        f"{'p90 s':>7} {'last s':>7} {'gap s':>6} {'notif/s':>8} {'conns':>6} {'csip us/n':>10} "
        f"{'busy':>5} {'other':>5} {'recv':>5} {'core1':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, c in result["cases"].items():
        if name.startswith("_"):
            continue
        last = f"{c['last_s']:.2f}" if c["last_s"] is not None else "-"
        rate = f"{c['per_s']:.0f}" if c["per_s"] is not None else "-"
        print(
            f"{name:<20} {c['received']:>6} {c['missing']:>5} {c['duplicates']:>4} "
            f"{c['first_s'] or 0:>8.3f} {c['p50_s']:>7.2f} {c['p90_s']:>7.2f} {last:>7} "
            f"{c['max_gap_s']:>6.2f} {rate:>8} {c['connections']:>6} "
            f"{c['csip_cpu_us_per_notification']:>10.0f} "
            f"{c['csip_busy_share']:>5.0%} {c['core0_other_share']:>5.0%} "
            f"{c['receivers_busy_share']:>5.0%} {c['core1_busy_share']:>5.0%}"
        )
    print(
        "times from the admin POST; gap: longest pause between two arrivals; conns: distinct "
        "client (address, port) pairs the receivers saw (ports get reused: ~connections); "
        "csip us/n: csip CPU per notification; busy: csip CPU / wall; other: core 0 used by "
        "other processes; recv: the receivers' CPU / wall; core1: all of core 1 (receivers, load "
        "generator, others)"
    )
    p = result["poll_load"]
    if p:
        print(
            f"\npoll load ({p['concurrency']} keep-alive connections, {p['paths']}, "
            f"{p['duration_s']} s each, the loaded run started at the first notification):"
        )
        for label in ("idle_before", "during", "idle_after"):
            r = p[label]
            print(
                f"  {label:<12} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:>7.2f} ms  "
                f"p99 {r['p99_ms']:>8.2f} ms  csip CPU/req "
                f"{'-' if r['cpu_us_per_req'] is None else r['cpu_us_per_req']:>6} us  "
                f"csip busy {r['csip_busy_share']:.0%}  "
                f"load generator {r['client_cpu_share']:.0%} of core {CLIENT_CORE}"
            )
        print(f"  during / idle req/s: {p['ratio']}   p99 during / idle: x{p['p99_ratio']}")
        print(
            f"  notifications went out during {p['overlap_share']:.0%} of the loaded window "
            f"({p['notifications_in_window']} in it, {p['notifications_per_s_in_window']}/s; "
            f"keep-alive case without poll load: {p['notifications_per_s_idle']}/s)"
        )
        print(
            f"  an admin write notifying nobody (POST a control to another program): "
            f"{p['admin_write_idle_s']} s idle, {p['admin_write_under_poll_s']} s under the "
            "idle-run poll load"
        )
    prof = result["profile"]
    if prof:
        print(
            f"\nprofile of csip during a keep-alive fan-out (py-spy, {prof['samples']} busy "
            f"samples, {prof['db_thread_share']:.0%} of them in the aiosqlite thread):"
        )
        print("  self time:")
        for f, s in prof["self"][:15]:
            print(f"    {s:>6.1%}  {f}")
        print("  inclusive:")
        for f, s in prof["inclusive"][:25]:
            print(f"    {s:>6.1%}  {f}")
        print("  outermost frames (not <module>: SQLAlchemy ORM code running in a greenlet):")
        for f, s in prof.get("roots", []):
            print(f"    {s:>6.1%}  {f}")
    print("\ntargets (printed, never asserted):")
    for t in result["targets"]:
        verdict = "meets" if t["meets"] else "MISSES"
        print(f"  [{verdict:>6}] {t['target']}: {t['value']}")
    if result["anomalies"]:
        print("\nanomalies:")
        for a in result["anomalies"]:
            print(f"  - {a}")
    print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="csip notification benchmark (see bench/README.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--devices", type=int, default=10_000, help="subscribers (default 10000)")
    parser.add_argument("--receivers", type=int, default=4, help="receiver processes (default 4)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="poll load connections")
    parser.add_argument(
        "--load-duration",
        type=float,
        default=0.0,
        help="seconds per poll-load run (default: the keep-alive fan-out time, 2-20 s)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="max wait per fan-out (s)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="wait after the last arrival for duplicates (s)"
    )
    parser.add_argument("--retry-delays", default="1,5", help="CSIP_OUTBOX_RETRY_DELAYS")
    parser.add_argument(
        "--member-sample",
        type=int,
        default=1000,
        help="devices added to the group one PUT each (timed); the rest in bulk",
    )
    parser.add_argument("--batch", type=int, default=2000, help="EndDevices per admin request")
    parser.add_argument(
        "--profile", type=Path, help="also sample csip with py-spy during one more fan-out"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 devices")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    # The receiver process (internal).
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.quick:
        args.devices = min(args.devices, 500)
        args.member_sample = min(args.member_sample, 100)
        args.timeout = min(args.timeout, 30.0)
        args.settle = min(args.settle, 1.5)
    if args.devices < 1 or args.receivers < 1:
        parser.error("--devices and --receivers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver:
        receiver_main(args.port, args.control_port, args.certs_dir)
        return 0
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is required")
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: csip and the receivers will share a core")
    build_loadgen()
    workdir = Path(tempfile.mkdtemp(prefix="csip-notify-"))
    bench = Bench(args, workdir)
    started = time.monotonic()
    try:
        with terminate_on_signal():
            result = bench.run()
    finally:
        for proc in list(bench.procs):
            proc.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["config"]["wall_s"] = round(time.monotonic() - started, 1)
    print_table(result)
    blob = json.dumps(result, sort_keys=False)
    if args.json_out:
        args.json_out.write_text(blob + "\n")
    print(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
