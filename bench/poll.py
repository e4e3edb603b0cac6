"""Polling benchmark: csip against a same-run baseline, driven by a C load generator.

Everything happens on loopback, in a temporary directory that is removed at the end:

1. build ``bench/out/loadgen`` from ``bench/loadgen.c`` if missing or stale;
2. make a test PKI, start ``csip serve`` pinned to core 0 (``taskset -c 0``), register the
   fleet through the admin bulk endpoint (an aggregator owns it) and let one device certificate
   register its own EndDevice in band (POST /edev);
3. for each mode: time the cold first pass over its paths, capture the exact bytes csip
   returns, start the baseline (``bench/baseline.py``: the same TLS context and event loop,
   serving those bytes from a dict) pinned to core 0 as well, and measure csip and the
   baseline alternately (the other one is SIGSTOPped meanwhile), ``--repeats`` times each,
   with the load generator pinned to core 1; medians are reported;
4. print a table, the targets beside the figures (never asserted), and one JSON line.

Server CPU per request is read from /proc/PID/stat (utime + stime) around each load.

Modes (``--modes``, comma-separated; default all):
  keepalive  64 keep-alive connections polling /dcap, /edev/{id}, /edev/{id}/fsa of one device
  newconn    the same paths, a new TLS connection per request, without and with resumption
  aggregator one aggregator certificate walking every /edev?s=K&l=255 page and each device's
             /edev/{id} and /edev/{id}/fsa; plus the /edev page figure (pages of 100) with
             100 devices and with the whole fleet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nginx
from common import (
    CLIENT_CORE,
    EDEV_XML,
    HERE,
    SERVER_CORE,
    Admin,
    Load,
    Proc,
    Sep2Client,
    build_loadgen,
    capture,
    core_ticks,
    csip_bin,
    free_port,
    random_lfdis,
    run_loadgen,
    spawn,
    terminate_on_signal,
    wait_until,
)

SMALL_FLEET = 100
PAGE = 255  # the largest page 2030.5 list queries allow (l=255)
TOLERANCE = 0.10  # "equal within noise" for the printed verdicts

ALL_MODES = ("keepalive", "newconn", "aggregator")


def log(message: str) -> None:
    print(f"[poll] {message}", file=sys.stderr, flush=True)


# ---- measurement -------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table: a load pattern measured on csip and on the baseline."""

    name: str
    description: str
    load: Load
    csip_runs: list[dict[str, Any]] = field(default_factory=list)
    base_runs: list[dict[str, Any]] = field(default_factory=list)
    #: The other references of the same run: "bare" (the bare-protocol limit), "nginx".
    other_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {}

    def median(key: str) -> float:
        return round(float(statistics.median(run[key] for run in runs)), 3)

    rps = [run["rps"] for run in runs]
    return {
        "rps": round(statistics.median(rps), 1),
        "rps_min": round(min(rps), 1),
        "rps_max": round(max(rps), 1),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "cpu_us_per_req": round(statistics.median(run["cpu_us_per_req"] for run in runs), 1),
        "requests": sum(run["requests"] for run in runs),
        "non2xx": sum(run["non2xx"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "client_cpu_share": median("client_cpu_share"),
        "server_busy_share": median("server_busy_share"),
        "core_other_share": median("core_other_share"),
        "cipher": runs[0].get("cipher"),
        "runs": len(runs),
    }


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    cold: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def hard_timeout(self) -> float:
        if self.args.requests:
            return 300.0
        return float(self.args.duration) + 60.0

    def load_on(self, proc: Proc, port: int, load: Load) -> dict[str, Any]:
        """Run ``load`` against ``proc`` alone (every other server paused) and add CPU/req."""
        for other in self.procs:
            if other is not proc:
                other.pause()
        proc.resume()
        before = proc.cpu_seconds()
        busy0, steal0 = core_ticks(SERVER_CORE)
        result = run_loadgen(load, port, self.ca, self.args.ciphers, self.hard_timeout)
        busy1, steal1 = core_ticks(SERVER_CORE)
        after = proc.cpu_seconds()
        done = max(result["requests"], 1)
        elapsed = max(result["elapsed_s"], 1e-9)
        tick = os.sysconf("SC_CLK_TCK")
        result["cpu_us_per_req"] = (after - before) * 1e6 / done
        result["server_cpu_s"] = after - before
        result["client_cpu_share"] = result["client_cpu_s"] / elapsed
        # How busy the server was, and how much of its core went to other processes or to
        # the hypervisor: req/s only means something when the server had the core to itself.
        result["server_busy_share"] = (after - before) / elapsed
        result["core_other_share"] = max(0.0, (busy1 - busy0) / tick - (after - before)) / elapsed
        result["steal_share"] = (steal1 - steal0) / tick / elapsed
        if result["errors"] or result["non2xx"]:
            self.anomalies.append(
                f"{proc.name}: {result['non2xx']} non-2xx and {result['errors']} errors "
                f"out of {result['requests']} requests ({load.paths_file.name})"
            )
        if (
            not load.one_pass
            and result["elapsed_s"] >= 1
            and (result["core_other_share"] > 0.1 or result["steal_share"] > 0.05)
        ):
            self.anomalies.append(
                f"core {SERVER_CORE} not exclusive while measuring {proc.name} "
                f"({load.paths_file.name}): other processes {result['core_other_share']:.0%}, "
                f"steal {result['steal_share']:.0%}, server busy "
                f"{result['server_busy_share']:.0%}: trust CPU us/req over req/s"
            )
        if result["client_cpu_share"] > 0.9 and not load.one_pass:
            self.anomalies.append(
                f"load generator near saturation ({result['client_cpu_share']:.0%} of core "
                f"{CLIENT_CORE}) against {proc.name}: figures may be client-bound"
            )
        return result

    def cold_pass(self, name: str, proc: Proc, port: int, load: Load) -> None:
        """Time the first pass over a path list (every path exactly once)."""
        one = Load(load.cert, load.paths_file, load.concurrency, one_pass=True)
        result = self.load_on(proc, port, one)
        done = max(result["requests"], 1)
        self.cold[name] = {
            "paths": result["paths"],
            "concurrency": load.concurrency,
            "elapsed_s": round(result["elapsed_s"], 4),
            "wall_us_per_path": round(result["elapsed_s"] * 1e6 / done, 1),
            "server_cpu_ms": round(result["server_cpu_s"] * 1000, 1),
            "server_cpu_us_per_path": round(result["cpu_us_per_req"], 1),
            "p50_ms": result["p50_ms"],
            "max_ms": result["max_ms"],
        }
        log(
            f"cold first pass {name}: {result['paths']} paths in {result['elapsed_s']:.3f} s "
            f"(server CPU {self.cold[name]['server_cpu_ms']} ms)"
        )

    def measure(self, rows: list[Row], csip: Proc, refs: list[tuple[str, Proc, int]]) -> None:
        """Measure every row on csip and on each reference ("baseline" first), in turns
        whose order rotates every repetition, each server alone on its core."""
        repeats = self.args.repeats
        servers = [("csip", csip, self.sep2_port), *refs]
        for row in rows:
            # warm-up: one pass whose connections close (a fresh uvloop TLS server costs
            # about twice the CPU per request until its first TLS connection closes)
            warm = Load(row.load.cert, row.load.paths_file, row.load.concurrency, one_pass=True)
            for _, proc, port in servers:
                self.load_on(proc, port, warm)
            for rep in range(repeats):
                shift = rep % len(servers)
                for label, proc, port in servers[shift:] + servers[:shift]:
                    result = self.load_on(proc, port, row.load)
                    if label == "csip":
                        row.csip_runs.append(result)
                    elif label == "baseline":
                        row.base_runs.append(result)
                    else:
                        row.other_runs.setdefault(label, []).append(result)
                figures = ", ".join(
                    f"{label} {runs[-1]['rps']:.0f}"
                    for label, runs in (
                        ("csip", row.csip_runs),
                        ("baseline", row.base_runs),
                        *row.other_runs.items(),
                    )
                )
                log(f"{row.name} #{rep + 1} req/s: {figures}")
            self.rows.append(row)
        for proc in self.procs:
            proc.resume()

    # ---- the run ------------------------------------------------------------------
    def write_paths(self, name: str, paths: list[str]) -> Path:
        path = self.workdir / f"{name}.paths"
        path.write_text("".join(p + "\n" for p in paths))
        return path

    def start_baseline(self, name: str, bodies: dict[str, bytes]) -> tuple[Proc, int]:
        return self.start_python_reference(name, "baseline.py", bodies)

    def start_python_reference(
        self, name: str, script: str, bodies: dict[str, bytes]
    ) -> tuple[Proc, int]:
        bodies_file = self.workdir / f"{name}.json"
        bodies_file.write_text(json.dumps({k: v.decode("latin-1") for k, v in bodies.items()}))
        port = free_port()
        command = [sys.executable, str(HERE / script), "--port", str(port)]
        command += ["--certs-dir", str(self.pki), "--bodies", str(bodies_file)]
        proc = spawn(name, command, self.workdir)
        self.procs.append(proc)
        wait_until(lambda: "ready" in proc.log_path.read_text(), proc, 60, f"starting {name}")
        return proc, port

    def start_references(self, name: str, bodies: dict[str, bytes]) -> list[tuple[str, Proc, int]]:
        """The baseline (minimal aiohttp), the bare-protocol limit and, when installed,
        nginx, all serving `bodies` over the same mutual TLS on the server core."""
        base, base_port = self.start_baseline(name, bodies)
        refs = [("baseline", base, base_port)]
        if "bare" in self.args.references:
            bare, bare_port = self.start_python_reference(f"{name}-bare", "bare.py", bodies)
            refs.append(("bare", bare, bare_port))
        if "nginx" in self.args.references:
            found = nginx.binary()
            if found is None:
                message = "nginx is not installed (apt-get install nginx-light): no nginx column"
                if message not in self.anomalies:
                    self.anomalies.append(message)
                    log(message)
            else:
                port = free_port()
                note = nginx.open_file_limit(len(bodies))[1]
                if note is not None and note not in self.anomalies:
                    self.anomalies.append(note)
                    log(note)
                proc = nginx.start(found, self.workdir, f"{name}-nginx", self.pki, port, bodies)
                self.procs.append(proc)
                wait_until(lambda: self.listening(port), proc, 60, "starting nginx")
                refs.append(("nginx", proc, port))
        return refs

    @staticmethod
    def listening(port: int) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def stop_references(self, refs: list[tuple[str, Proc, int]]) -> None:
        for _, proc, _ in refs:
            self.stop_proc(proc)

    def stop_proc(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def run(self) -> dict[str, Any]:
        args = self.args
        modes = set(args.modes)
        csip = csip_bin()
        self.pki = self.workdir / "pki"
        self.ca = self.pki / "ca.pem"
        subprocess.run(
            [csip, "certs", "init", "--dir", str(self.pki)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        device = subprocess.run(
            [csip, "certs", "device", "--oem", "bench", "--serial", "0001", "--dir", str(self.pki)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        ids = dict(
            line.split(": ", 1) for line in device.splitlines() if line.startswith(("lfdi", "sfdi"))
        )
        device_cert = self.pki / "devices" / "bench-0001-combined.pem"
        agg = subprocess.run(
            [csip, "certs", "aggregator", "bench-agg", "--dir", str(self.pki)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        agg_lfdi = next(
            line.split(": ", 1)[1] for line in agg.splitlines() if line.startswith("lfdi")
        )
        agg_cert = self.pki / "aggregators" / "bench-agg-combined.pem"

        db = ["--db", args.db] if args.db else ["--data-dir", str(self.workdir / "data")]
        self.sep2_port, admin_port = free_port(), free_port()
        server = spawn(
            "csip",
            [
                *(csip, "serve", *db, "--certs-dir", str(self.pki)),
                *("--sep2-port", str(self.sep2_port), "--admin-port", str(admin_port)),
            ],
            self.workdir,
        )
        self.procs.append(server)
        # csip migrates the database as it starts; `csip admin token` would migrate it too,
        # and two first migrations of one SQLite file at once collide: wait for the banner
        wait_until(lambda: "Ctrl-C stops" in server.log_path.read_text(), server, 60, "starting")
        token = subprocess.run(
            [csip, "admin", "token", *db], check=True, capture_output=True, text=True, timeout=60
        ).stdout.strip()
        admin = Admin(admin_port, token)
        wait_until(lambda: admin.call("GET", "/api/status"), server, 60, "starting csip")
        status = admin.call("GET", "/api/status")
        if status.get("end_devices"):
            self.anomalies.append(
                f"the database already holds {status['end_devices']} EndDevices (--db not fresh)"
            )

        # The device registers itself in band.
        dev = Sep2Client(self.sep2_port, self.ca, device_cert)
        code, _, response = dev.request(
            "POST", "/edev", EDEV_XML.format(lfdi=ids["lfdi"], sfdi=ids["sfdi"]).encode()
        )
        location = response.getheader("Location") or ""
        if code != 201 or not location.startswith("/edev/"):
            raise RuntimeError(f"POST /edev answered {code}, Location {location!r}")
        device_paths = ["/dcap", location, f"{location}/fsa"]
        device_file = self.write_paths("device", device_paths)

        admin.call("POST", "/api/aggregators", {"name": "bench-agg"})
        admin.call("PUT", f"/api/aggregators/bench-agg/certificates/{agg_lfdi}", {})
        aggc = Sep2Client(self.sep2_port, self.ca, agg_cert)
        hrefs: list[str] = []

        def register(count: int) -> float:
            start = time.perf_counter()
            for offset in range(0, count, args.batch):
                batch = random_lfdis(min(args.batch, count - offset))
                answer = admin.call(
                    "POST",
                    "/api/end-devices",
                    [{"lfdi": lfdi, "aggregator": "bench-agg"} for lfdi in batch],
                )
                hrefs.extend(item["href"] for item in answer["items"])
            return time.perf_counter() - start

        def page_paths(size: int, fleet: int) -> list[str]:
            return [f"/edev?s={s}&l={size}" for s in range(0, fleet, size)]

        conc = args.concurrency
        small = min(SMALL_FLEET, args.devices)
        page_size = small  # the page figure compares pages of the same size at both fleets
        if "aggregator" in modes and args.devices > small:
            elapsed = register(small)
            log(f"registered {small} EndDevices in {elapsed:.2f} s")
            pages = page_paths(page_size, small)
            pages_file = self.write_paths("pages-small", pages)
            load = Load(agg_cert, pages_file, 1)
            self.cold_pass(f"edev-page@{small}", server, self.sep2_port, load)
            self.check_page(aggc, pages[0], small)
            small_bodies = capture(aggc, pages, self.anomalies)
            refs = self.start_references("baseline-small", small_bodies)
            row = Row(
                f"edev-page@{small}",
                f"aggregator /edev pages of {page_size}, fleet of {small}",
                Load(agg_cert, pages_file, conc, args.duration, args.requests),
            )
            self.measure([row], server, refs)
            self.stop_references(refs)

        rest = args.devices - len(hrefs)
        elapsed = register(rest)
        self.setup = {
            "devices": len(hrefs),
            "registered": rest,
            "register_s": round(elapsed, 3),
            "register_per_s": round(rest / elapsed, 1) if elapsed else None,
            "batch": args.batch,
        }
        log(f"registered {rest} EndDevices in {elapsed:.2f} s (total {len(hrefs)})")
        fleet = len(hrefs)

        rows: list[Row] = []
        bodies: dict[str, bytes] = {}
        self.cold_pass("device", server, self.sep2_port, Load(device_cert, device_file, 1))
        bodies.update(capture(dev, device_paths, self.anomalies))
        if "keepalive" in modes:
            rows.append(
                Row(
                    "keepalive",
                    f"{conc} keep-alive connections, one device's /dcap, EndDevice, FSA list",
                    Load(device_cert, device_file, conc, args.duration, args.requests),
                )
            )
        if "newconn" in modes:
            for resume in (False, True):
                rows.append(
                    Row(
                        "newconn+resume" if resume else "newconn",
                        "new TLS connection per request, "
                        + ("with session resumption" if resume else "full handshake each"),
                        Load(
                            device_cert,
                            device_file,
                            conc,
                            args.duration,
                            args.requests,
                            new_connection=True,
                            resume=resume,
                        ),
                    )
                )
        if "aggregator" in modes:
            pages = page_paths(page_size, fleet)
            pages_file = self.write_paths("pages-fleet", pages)
            self.cold_pass(
                f"edev-page@{fleet}", server, self.sep2_port, Load(agg_cert, pages_file, 1)
            )
            self.check_page(aggc, pages[0], fleet)
            self.check_page(aggc, pages[-1], fleet)
            bodies.update(capture(aggc, pages, self.anomalies))
            walk = page_paths(PAGE, fleet)
            for href in hrefs:
                walk += [href, f"{href}/fsa"]
            walk_file = self.write_paths("aggregator", walk)
            self.cold_pass("aggregator", server, self.sep2_port, Load(agg_cert, walk_file, conc))
            t0 = time.perf_counter()
            bodies.update(capture(aggc, walk, self.anomalies))
            log(f"captured {len(walk)} aggregator bodies in {time.perf_counter() - t0:.1f} s")
            rows.append(
                Row(
                    f"edev-page@{fleet}",
                    f"aggregator /edev pages of {page_size}, fleet of {fleet}",
                    Load(agg_cert, pages_file, conc, args.duration, args.requests),
                )
            )
            rows.append(
                Row(
                    "aggregator",
                    f"one aggregator cert: {len(walk) - 2 * fleet} /edev pages of {PAGE} "
                    f"+ {fleet} x (EndDevice, FSA list)",
                    Load(agg_cert, walk_file, conc, args.duration, args.requests),
                )
            )
        dev.close()
        aggc.close()
        refs = self.start_references("baseline", bodies)
        self.measure(rows, server, refs)
        self.stop_references(refs)
        if not server.alive():
            self.anomalies.append(f"csip exited during the run:\n{server.tail()}")
        return self.report(fleet, small)

    def check_page(self, client: Sep2Client, path: str, fleet: int) -> None:
        """The aggregator's EndDeviceList holds the `fleet` devices it manages plus its
        certificate's own EndDevice (CSIP-AUS aggregator model, made on its first request
        and listed first), never the in-band device of the other certificate."""
        expected = fleet + 1
        status, body, _ = client.request("GET", path)
        if status != 200 or f'all="{expected}"'.encode() not in body:
            head = body[:200].decode(errors="replace")
            self.anomalies.append(
                f"GET {path} with {fleet} aggregator devices: status {status}, body {head!r} "
                f'(expected all="{expected}": the fleet and the aggregator\'s own EndDevice)'
            )

    # ---- output -------------------------------------------------------------------
    def report(self, fleet: int, small: int) -> dict[str, Any]:
        modes: dict[str, Any] = {}
        for row in self.rows:
            c, b = summarize(row.csip_runs), summarize(row.base_runs)
            modes[row.name] = {
                "description": row.description,
                "csip": c,
                "baseline": b,
                "ratio": round(c["rps"] / b["rps"], 3) if b.get("rps") else None,
                "cpu_ratio": round(c["cpu_us_per_req"] / b["cpu_us_per_req"], 3)
                if b.get("cpu_us_per_req")
                else None,
            }
            for label, runs in row.other_runs.items():
                o = summarize(runs)
                modes[row.name][label] = o
                modes[row.name][f"{label}_ratio"] = (
                    round(c["rps"] / o["rps"], 3) if o.get("rps") else None
                )
                # how many times csip's CPU per request the reference's is: 1.0 = as cheap
                modes[row.name][f"{label}_cpu_ratio"] = (
                    round(o["cpu_us_per_req"] / c["cpu_us_per_req"], 3)
                    if c.get("cpu_us_per_req")
                    else None
                )
        targets = self.targets(modes, fleet, small)
        return {
            "config": {
                "devices": fleet,
                "concurrency": self.args.concurrency,
                "duration_s": self.args.duration,
                "requests": self.args.requests,
                "repeats": self.args.repeats,
                "db": "postgresql" if self.args.db else "sqlite",
                "server_core": SERVER_CORE,
                "client_core": CLIENT_CORE,
                "ciphers_offered": self.args.ciphers or "loadgen default (CCM8 + HIGH)",
                "references": ["baseline", *self.args.references],
                "nginx": nginx.binary() or "not installed",
            },
            "setup": self.setup,
            "cold": self.cold,
            "modes": modes,
            "targets": targets,
            "anomalies": self.anomalies,
        }

    @staticmethod
    def targets(modes: dict[str, Any], fleet: int, small: int) -> list[dict[str, Any]]:
        """Targets with two readings: req/s ratio (what was asked) and the CPU-derived ratio
        (baseline CPU/req over csip CPU/req), which holds even when another process took part
        of the server's core during a run. ``meets`` is judged on the CPU reading, except for
        the keep-alive target which is stated in req/s (``meets_cpu`` gives the other)."""
        out: list[dict[str, Any]] = []

        def cpu_ratio(mode: dict[str, Any] | None) -> float | None:
            if not mode or not mode.get("cpu_ratio"):
                return None
            return round(1 / float(mode["cpu_ratio"]), 3)

        keep_mode = modes.get("keepalive")
        keep, keep_cpu = (keep_mode or {}).get("ratio"), cpu_ratio(keep_mode)
        if keep is not None and keep_cpu is not None:
            out.append(
                {
                    "target": "keep-alive csip/baseline req/s >= 0.8",
                    "value": f"req/s ratio {keep}, CPU-derived {keep_cpu}",
                    "meets": keep >= 0.8,
                    "meets_cpu": keep_cpu >= 0.8,
                }
            )
        agg_mode = modes.get("aggregator")
        agg, agg_cpu = (agg_mode or {}).get("ratio"), cpu_ratio(agg_mode)
        if agg is not None and agg_cpu is not None and keep and keep_cpu:
            rel, rel_cpu = agg / keep, agg_cpu / keep_cpu
            out.append(
                {
                    "target": "aggregator ratio == keep-alive ratio (within 10%)",
                    "value": f"CPU-derived {agg_cpu} vs {keep_cpu} ({rel_cpu:.2f}x); "
                    f"req/s {agg} vs {keep} ({rel:.2f}x)",
                    "meets": abs(rel_cpu - 1) <= TOLERANCE,
                }
            )
        a, b = modes.get(f"edev-page@{small}"), modes.get(f"edev-page@{fleet}")
        a_cpu, b_cpu = cpu_ratio(a), cpu_ratio(b)
        if a and b and a_cpu and b_cpu and a["ratio"] and b["ratio"]:
            # Judged against the same-run baseline serving the same bytes: with the whole fleet
            # the pages are many distinct bodies instead of one, which costs both servers a
            # little more (memory footprint), and that is not csip's page cost growing.
            rel_cpu, rel = b_cpu / a_cpu, b["ratio"] / a["ratio"]
            out.append(
                {
                    "target": f"/edev page cost with {small} == with {fleet} devices, "
                    "relative to the baseline (within 10%)",
                    "value": f"CPU-derived ratio {a_cpu} and {b_cpu} ({rel_cpu:.2f}x); "
                    f"req/s ratio {a['ratio']} and {b['ratio']} ({rel:.2f}x); raw csip CPU "
                    f"us/req {a['csip']['cpu_us_per_req']} and {b['csip']['cpu_us_per_req']}",
                    "meets": abs(rel_cpu - 1) <= TOLERANCE,
                }
            )
        # issue 14: polls at nginx speed; handshakes within 5 % of the bare protocol
        for name in ("keepalive", "aggregator"):
            mode = modes.get(name) or {}
            if mode.get("nginx_cpu_ratio"):
                out.append(
                    {
                        "target": f"{name}: csip CPU/req at most nginx's (ratio >= 1.0)",
                        "value": f"nginx CPU/req / csip CPU/req {mode['nginx_cpu_ratio']}; "
                        f"req/s csip/nginx {mode['nginx_ratio']}",
                        "meets": mode["nginx_cpu_ratio"] >= 1.0,
                    }
                )
        for name in ("newconn", "newconn+resume"):
            mode = modes.get(name) or {}
            if mode.get("bare_cpu_ratio"):
                out.append(
                    {
                        "target": f"{name}: csip within 5% of the bare protocol (CPU/req)",
                        "value": f"bare CPU/req / csip CPU/req {mode['bare_cpu_ratio']}; "
                        f"req/s csip/bare {mode['bare_ratio']}",
                        "meets": mode["bare_cpu_ratio"] >= 0.95,
                    }
                )
        return out


def print_table(result: dict[str, Any]) -> None:
    cfg = result["config"]
    print()
    print(
        f"csip polling benchmark: {cfg['devices']} EndDevices, {cfg['concurrency']} connections, "
        f"{cfg['db']}, server on core {cfg['server_core']}, load on core {cfg['client_core']}, "
        f"median of {cfg['repeats']}"
    )
    header = (
        f"{'mode':<18} {'':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} "
        f"{'non2xx':>7} {'errors':>7} {'busy':>5} {'other':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, mode in result["modes"].items():
        for label, side in (("csip", mode["csip"]), ("base", mode["baseline"])):
            print(
                f"{name if label == 'csip' else '':<18} {label:>4} {side['rps']:>9.0f} "
                f"{side['p50_ms']:>8.2f} {side['p99_ms']:>8.2f} {side['cpu_us_per_req']:>11.1f} "
                f"{side['non2xx']:>7} {side['errors']:>7} {side['server_busy_share']:>5.0%} "
                f"{side['core_other_share']:>5.0%}"
            )
        for label in ("bare", "nginx"):
            side = mode.get(label)
            if side:
                print(
                    f"{'':<18} {label[:5]:>4} {side['rps']:>9.0f} {side['p50_ms']:>8.2f} "
                    f"{side['p99_ms']:>8.2f} {side['cpu_us_per_req']:>11.1f} "
                    f"{side['non2xx']:>7} {side['errors']:>7} {side['server_busy_share']:>5.0%} "
                    f"{side['core_other_share']:>5.0%}"
                )
        print(
            f"{'':<18} {'':>4} ratio csip/baseline req/s {mode['ratio']}, "
            f"CPU/req {mode['cpu_ratio']}x (req/s range csip {mode['csip']['rps_min']:.0f}"
            f"-{mode['csip']['rps_max']:.0f}, baseline {mode['baseline']['rps_min']:.0f}"
            f"-{mode['baseline']['rps_max']:.0f})"
        )
        for label in ("bare", "nginx"):
            if mode.get(label):
                print(
                    f"{'':<18} {'':>4} csip/{label}: req/s {mode[f'{label}_ratio']}, "
                    f"{label} CPU/req over csip's {mode[f'{label}_cpu_ratio']} "
                    "(>= 1.0: csip spends no more per request)"
                )
    if result["cold"]:
        print(
            "\ncold first pass (csip, each path once, includes the connections' handshakes;"
            " server CPU from /proc in 10 ms ticks):"
        )
        for name, cold in result["cold"].items():
            print(
                f"  {name:<18} {cold['paths']:>6} paths, {cold['concurrency']:>3} conn: "
                f"{cold['elapsed_s'] * 1000:>9.1f} ms, {cold['wall_us_per_path']:>8.1f} us/path "
                f"wall, server CPU {cold['server_cpu_ms']:>8.1f} ms"
            )
    if result["setup"]:
        s = result["setup"]
        print(
            f"\nregistration (admin bulk, {s['batch']} per request): {s['registered']} EndDevices "
            f"in {s['register_s']} s ({s['register_per_s']}/s); fleet {s['devices']}"
        )
    print(
        "busy: server CPU / wall time; other: share of the server's core used by other "
        "processes (when high, trust CPU us/req over req/s)"
    )
    print("\ntargets (printed, never asserted; judged on CPU us/req ratios, robust to noise):")
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
        description="csip polling benchmark (see bench/README.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--devices", type=int, default=10_000, help="fleet size (default 10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (default 64)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--requests", type=int, default=0, help="requests per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="csip/baseline alternations")
    parser.add_argument(
        "--modes", default=",".join(ALL_MODES), help=f"comma-separated: {', '.join(ALL_MODES)}"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    parser.add_argument("--db", help="database URL for csip (a fresh database); default SQLite")
    parser.add_argument("--batch", type=int, default=2000, help="EndDevices per admin request")
    parser.add_argument("--ciphers", help="OpenSSL cipher list the load generator offers")
    parser.add_argument(
        "--references",
        default="bare,nginx",
        help="references besides the aiohttp baseline: bare (the bare-protocol limit), "
        "nginx (when installed); comma-separated, empty for none",
    )
    parser.add_argument("--json-out", type=Path, help="also write the JSON result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    workers = parser.add_argument_group(
        "several workers (--workers N > 1: the cross-worker propagation run, bench/propagate.py)"
    )
    workers.add_argument(
        "--workers", type=int, default=1, help="csip serve --workers N (needs --db postgresql)"
    )
    workers.add_argument("--observers", type=int, default=2, help="observer connections/worker")
    workers.add_argument(
        "--propagation-timeout", type=float, default=60.0, help="longest wait for new bytes (s)"
    )
    args = parser.parse_args(argv)
    if args.workers > 1 and not (args.db or "").startswith("postgresql"):
        parser.error("--workers N > 1 needs --db postgresql+asyncpg://... (a fresh database)")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.references = [r.strip() for r in args.references.split(",") if r.strip()]
    if set(args.references) - {"bare", "nginx"}:
        parser.error("--references takes bare and/or nginx")
    unknown = set(args.modes) - set(ALL_MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if args.quick:
        args.devices = min(args.devices, 300)
        args.concurrency = min(args.concurrency, 16)
        args.duration = min(args.duration, 1.0)
        args.requests = min(args.requests, 5000)
        args.repeats = 1
    if args.devices < 1 or args.concurrency < 1 or args.repeats < 1:
        parser.error("--devices, --concurrency and --repeats must be positive")
    if args.duration <= 0 and args.requests <= 0:
        parser.error("give --duration or --requests")
    return args


def propagation(args: argparse.Namespace, bench: Bench, workdir: Path) -> int:
    """``--workers N``: how fast a write reaches every worker (bench/propagate.py)."""
    import propagate

    args.concurrency = min(args.concurrency, 16)
    try:
        with terminate_on_signal():
            result = propagate.run(args, workdir, bench.procs, bench.anomalies)
    finally:
        for proc in list(bench.procs):
            proc.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    propagate.print_table(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("taskset",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required")
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: server and load generator will share a core")
    build_loadgen()
    workdir = Path(tempfile.mkdtemp(prefix="csip-bench-"))
    bench = Bench(args, workdir)
    started = time.monotonic()
    if args.workers > 1:
        return propagation(args, bench, workdir)
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
