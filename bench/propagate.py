"""Cross-worker propagation (``poll.py --workers N --db postgresql+asyncpg://...``).

csip runs as ``csip serve --workers N`` on a fresh PostgreSQL database, pinned to the server
core, with ``CSIP_LAB_WORKER_HEADER=true`` so every answer names the worker (pid) that sent
it. While the C load generator polls (keep-alive, the load core), observers (Python, on the
load core too: they time changes, they are not the load) hold keep-alive connections until
every worker has at least ``--observers`` of them, and poll a sample of the changed resources
round-robin. Two writes through the admin API, the public interface only:

(a) membership: one ``POST /api/groups/{gid}/members`` putting the whole fleet (10,000
    devices) into a group; observed: sampled devices' ``/edev/{id}/fsa`` (the aggregator's
    certificate).
(b) controls: a DERControl for each of 1,000 groups (``POST /api/programs/{pid}/controls``,
    one per group's program); observed: sampled programs' ``/derp/{pid}/derc``.

For each observed path: the bytes before the write ("old"); for each worker the first time it
served other bytes; "seen everywhere" = the latest of those. Printed: the write's own time,
the lag from the write's answer until every worker served the new bytes of every sampled path
(max and median over paths), and any poll sent after that moment that still got the old bytes
(stale), per worker. Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from common import (
    CLIENT_CORE,
    SERVER_CORE,
    Admin,
    Load,
    Proc,
    csip_bin,
    free_port,
    log,
    random_lfdis,
    run_loadgen,
    spawn,
    wait_until,
)

WORKER_HEADER = "X-Csip-Worker"
SAMPLE = 20
GROUPS = 1000
LOAD_SLICE = 10.0  # seconds per background load generator run


@dataclass
class PathState:
    old: bytes | None = None
    #: worker pid -> monotonic time its first new answer was *received*
    first_new: dict[int, float] = field(default_factory=dict)
    #: (send time, pid) of every old answer
    old_answers: list[tuple[float, int]] = field(default_factory=list)
    written_at: float = 0.0  # when the write changing this path was answered

    def everywhere(self, pids: set[int]) -> float | None:
        if not pids or not pids <= set(self.first_new):
            return None
        return max(self.first_new[p] for p in pids)


@dataclass
class Observation:
    paths: dict[str, PathState]
    polls: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    non200: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    armed: bool = False  # once the old bytes are known everywhere


async def _observer(
    url: str,
    context: ssl.SSLContext,
    paths: list[str],
    offset: int,
    seen: Observation,
    stop: asyncio.Event,
    pids: set[int],
    wanted: dict[int, int],
    per_worker: int,
) -> None:
    """One keep-alive connection: kept if its worker still wants observers, polls round-robin."""
    connector = aiohttp.TCPConnector(ssl=context, limit=1)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:  # a busy worker may take a while to accept: a longer wait for the first answer
            first = aiohttp.ClientTimeout(total=60)
            async with session.get(url + paths[0], timeout=first) as response:
                await response.read()
                pid = int(response.headers[WORKER_HEADER])
        except (TimeoutError, aiohttp.ClientError, OSError, KeyError):
            return
        if wanted.get(pid, 0) >= per_worker:
            return
        wanted[pid] = wanted.get(pid, 0) + 1
        pids.add(pid)
        index = offset
        while not stop.is_set():
            path = paths[index % len(paths)]
            index += 1
            sent = time.monotonic()
            try:
                async with session.get(url + path) as response:
                    body = await response.read()
                    pid = int(response.headers.get(WORKER_HEADER, "0"))
                    status = response.status
            except (TimeoutError, aiohttp.ClientError, OSError):
                seen.errors += 1
                await asyncio.sleep(0.05)
                continue
            if status != 200:  # an error is neither the old nor the new bytes
                seen.non200[status] = seen.non200.get(status, 0) + 1
                continue
            received = time.monotonic()
            seen.latencies.append(received - sent)
            seen.polls[pid] = seen.polls.get(pid, 0) + 1
            state = seen.paths[path]
            if not seen.armed or state.old is None:  # (a path not polled before the write
                state.old = body if state.old is None else state.old  # stays "old" as first seen)
                continue
            if body == state.old:
                state.old_answers.append((sent, pid))
            else:
                state.first_new.setdefault(pid, received)


@dataclass
class Phase:
    name: str
    paths: list[str]
    write: Callable[[dict[str, PathState]], None]


async def _run_phase(
    phase: Phase,
    base: str,
    context: ssl.SSLContext,
    workers: int,
    per_worker: int,
    wait_s: float,
    settle: float,
) -> dict[str, Any]:
    seen = Observation({p: PathState() for p in phase.paths})
    stop = asyncio.Event()
    pids: set[int] = set()
    wanted: dict[int, int] = {}
    tasks: list[asyncio.Task[None]] = []
    deadline = time.monotonic() + 90
    while (len(pids) < workers or min(wanted.values(), default=0) < per_worker) and (
        time.monotonic() < deadline
    ):
        batch = [
            asyncio.create_task(
                _observer(
                    base, context, phase.paths, len(tasks) + i, seen, stop, pids, wanted, per_worker
                )
            )
            for i in range(workers * per_worker)
        ]
        tasks += batch
        await asyncio.sleep(0.5)
    if len(pids) < workers:
        log(f"{phase.name}: observers reached only {len(pids)} of {workers} workers")
    await asyncio.sleep(max(2.0, 0.2 * len(phase.paths)))  # every path polled on every worker
    seen.armed = True
    started = time.monotonic()
    await asyncio.to_thread(phase.write, seen.paths)
    answered = time.monotonic()
    end = answered + wait_s
    moment: float | None = None
    while time.monotonic() < end:
        moments = [s.everywhere(pids) for s in seen.paths.values()]
        if all(m is not None for m in moments):
            moment = max(m for m in moments if m is not None)
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle)  # keep polling: any old bytes now are stale
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)

    lags: list[float] = []
    stale: dict[int, int] = {}
    missing: dict[int, int] = {}
    for state in seen.paths.values():
        everywhere = state.everywhere(pids)
        if everywhere is None:
            for pid in pids - set(state.first_new):
                missing[pid] = missing.get(pid, 0) + 1
            continue
        lags.append(everywhere - state.written_at)
        for sent, pid in state.old_answers:
            if sent > everywhere:
                stale[pid] = stale.get(pid, 0) + 1
    return {
        "write_s": round(answered - started, 3),
        "seen_everywhere_after_write_s": round(moment - answered, 3) if moment else None,
        "seen_everywhere_after_start_s": round(moment - started, 3) if moment else None,
        "lag_per_path_max_s": round(max(lags), 3) if lags else None,
        "lag_per_path_median_s": round(statistics.median(lags), 3) if lags else None,
        "paths": len(seen.paths),
        "paths_not_seen_everywhere": sum(1 for s in seen.paths.values() if not s.everywhere(pids)),
        "workers_missing_new_bytes": {str(p): n for p, n in missing.items()},
        "stale_after_seen_everywhere": {str(p): n for p, n in stale.items()},
        "observed_workers": len(pids),
        "observer_connections": dict(sorted((str(p), n) for p, n in wanted.items())),
        "polls_per_worker": {str(p): n for p, n in seen.polls.items()},
        "poll_errors": seen.errors,
        "observer_poll_p50_ms": round(statistics.median(seen.latencies) * 1000, 1)
        if seen.latencies
        else None,
        "observer_poll_p99_ms": round(
            sorted(seen.latencies)[int(0.99 * (len(seen.latencies) - 1))] * 1000, 1
        )
        if seen.latencies
        else None,
        "poll_non200": {str(k): n for k, n in seen.non200.items()},
        "timeout_s": wait_s,
    }


def _sample(items: list[Any], count: int) -> list[Any]:
    """`count` items spread over the list, its first and last included."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def run(args: Any, workdir: Path, procs: list[Proc], anomalies: list[str]) -> dict[str, Any]:
    from csip.web.tls import client_context

    csip = csip_bin()
    pki = workdir / "pki"
    subprocess.run([csip, "certs", "init", "--dir", str(pki)], check=True, capture_output=True)
    subprocess.run(
        [csip, "certs", "device", "--oem", "bench", "--serial", "0001", "--dir", str(pki)],
        check=True,
        capture_output=True,
    )
    agg = subprocess.run(
        [csip, "certs", "aggregator", "bench-agg", "--dir", str(pki)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    agg_lfdi = next(line.split(": ", 1)[1] for line in agg.splitlines() if line.startswith("lfdi"))
    agg_cert = pki / "aggregators" / "bench-agg-combined.pem"
    device_cert = pki / "devices" / "bench-0001-combined.pem"
    sep2_port, admin_port = free_port(), free_port()
    server = spawn(
        "csip",
        [
            *(csip, "serve", "--db", args.db, "--certs-dir", str(pki)),
            *("--workers", str(args.workers), "--sep2-port", str(sep2_port)),
            *("--admin-port", str(admin_port), "--vtn-port", "0"),
        ],
        workdir,
        env={"CSIP_LAB_WORKER_HEADER": "true"},
    )
    procs.append(server)
    wait_until(
        lambda: "workers share each port" in server.log_path.read_text(),
        server,
        120,
        "starting csip workers",
    )
    token = subprocess.run(
        [csip, "admin", "token", "--db", args.db],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    admin = Admin(admin_port, token)
    status = admin.call("GET", "/api/status")
    if status.get("end_devices"):
        anomalies.append(f"the database already holds {status['end_devices']} EndDevices")

    log(f"registering {args.devices} EndDevices (aggregator-owned)")
    admin.call("POST", "/api/aggregators", {"name": "bench-agg"})
    admin.call("PUT", f"/api/aggregators/bench-agg/certificates/{agg_lfdi}", {})
    lfdis: list[str] = []
    hrefs: list[str] = []
    for offset in range(0, args.devices, args.batch):
        batch = random_lfdis(min(args.batch, args.devices - offset))
        answer = admin.call(
            "POST", "/api/end-devices", [{"lfdi": x, "aggregator": "bench-agg"} for x in batch]
        )
        lfdis.extend(batch)
        hrefs.extend(item["href"] for item in answer["items"])

    groups = min(GROUPS, args.devices)
    log(f"creating {groups} groups, a program in each, {args.devices // groups} devices each")
    pool = ThreadPoolExecutor(4)
    lock = threading.Lock()
    programs: dict[int, int] = {}  # group index -> program id

    def make_group(index: int) -> None:
        group = admin.call("POST", "/api/groups", {"description": f"feeder {index}"})
        program = admin.call(
            "POST", f"/api/groups/{group['id']}/programs", {"description": "p", "primacy": 1}
        )
        members = lfdis[index::groups]
        admin.call("POST", f"/api/groups/{group['id']}/members", {"lfdis": members})
        with lock:
            programs[index] = program["id"]

    started = time.monotonic()
    list(pool.map(make_group, range(groups)))
    setup_s = time.monotonic() - started
    big = admin.call("POST", "/api/groups", {"description": "everyone"})

    def add_everyone(states: dict[str, PathState]) -> None:
        admin.call("POST", f"/api/groups/{big['id']}/members", {"lfdis": lfdis}, timeout=600)
        now = time.monotonic()
        for state in states.values():
            state.written_at = now

    sampled = set(_sample(list(range(groups)), SAMPLE))
    control_start = int(time.time()) + 86_400

    def controls(states: dict[str, PathState]) -> None:
        def one(index: int) -> None:
            pid = programs[index]
            admin.call(
                "POST",
                f"/api/programs/{pid}/controls",
                {
                    "controls": [
                        {
                            "start": control_start,
                            "duration": 3600,
                            "base": {"opModMaxLimW": 5000},
                        }
                    ]
                },
            )
            if index in sampled:
                states[f"/derp/{pid}/derc"].written_at = time.monotonic()

        list(pool.map(one, range(groups)))

    fsa_paths = [h + "/fsa" for h in _sample(hrefs, SAMPLE)]
    derc_paths = [f"/derp/{programs[i]}/derc" for i in sorted(sampled)]
    phases = [
        Phase(f"membership of {len(lfdis)} devices", fsa_paths, add_everyone),
        Phase(f"DERControl for {groups} groups", derc_paths, controls),
    ]

    # background poll load: the C load generator, keep-alive, the device's own resources
    paths_file = workdir / "load-paths.txt"
    paths_file.write_text("/dcap\n/tm\n")
    load = Load(device_cert, paths_file, args.concurrency, duration=LOAD_SLICE)
    load_runs: list[dict[str, Any]] = []
    done = threading.Event()

    def background() -> None:
        """Slices of LOAD_SLICE seconds until both phases are over."""
        while not done.is_set():
            try:
                load_runs.append(run_loadgen(load, sep2_port, pki / "ca.pem", None, 120))
            except RuntimeError as exc:
                anomalies.append(f"background load: {exc}")
                return

    context = client_context(ca_file=pki / "ca.pem", cert_chain_file=agg_cert)
    results: dict[str, Any] = {}
    loader = threading.Thread(target=background, daemon=True)
    loader.start()
    for phase in phases:
        log(f"phase: {phase.name}")
        results[phase.name] = asyncio.run(
            _run_phase(
                phase,
                f"https://localhost:{sep2_port}",
                context,
                args.workers,
                args.observers,
                args.propagation_timeout,
                2.0,
            )
        )
    done.set()
    loader.join(timeout=LOAD_SLICE + 120)
    pool.shutdown()
    if not server.alive():
        anomalies.append("csip exited during the run")
    return {
        "config": {
            "workers": args.workers,
            "devices": args.devices,
            "groups": groups,
            "db": "postgresql",
            "server_core": SERVER_CORE,
            "client_core": CLIENT_CORE,
            "observers_per_worker": args.observers,
            "sampled_paths": SAMPLE,
            "load_connections": args.concurrency,
        },
        "setup": {"groups_programs_members_s": round(setup_s, 1)},
        "phases": results,
        "background_load": {
            "runs": len(load_runs),
            "rps": round(statistics.median(r["rps"] for r in load_runs), 1) if load_runs else None,
            "p99_ms": max((r["p99_ms"] for r in load_runs), default=None),
            "non2xx": sum(r["non2xx"] for r in load_runs),
            "errors": sum(r["errors"] for r in load_runs),
        },
        "anomalies": anomalies,
    }


def print_table(result: dict[str, Any]) -> None:
    config = result["config"]
    print()
    print(
        f"csip --workers {config['workers']} on PostgreSQL, {config['devices']} devices, "
        f"{config['groups']} groups; {config['sampled_paths']} sampled paths per phase, "
        f"{config['observers_per_worker']} observer connections per worker"
    )
    header = f"{'phase':<34}{'write s':>9}{'all new s':>11}{'lag max':>9}{'lag p50':>9}"
    print(header + f"{'unseen':>8}{'stale':>7}{'workers':>9}{'poll p50/p99 ms':>17}")
    for name, row in result["phases"].items():
        seen = row["seen_everywhere_after_write_s"]
        bad = sum(row["poll_non200"].values()) + row["poll_errors"]
        if bad:
            print(f"  ({name}: {bad} observer polls failed: {row['poll_non200']} + I/O errors)")
        print(
            f"{name:<34}{row['write_s']:>9.3f}"
            f"{(f'{seen:.3f}' if seen is not None else 'never'):>11}"
            f"{(row['lag_per_path_max_s'] or float('nan')):>9.3f}"
            f"{(row['lag_per_path_median_s'] or float('nan')):>9.3f}"
            f"{row['paths_not_seen_everywhere']:>8}"
            f"{sum(row['stale_after_seen_everywhere'].values()):>7}"
            f"{row['observed_workers']:>9}"
            f"{row['observer_poll_p50_ms']!s:>10}/{row['observer_poll_p99_ms']}"
        )
    print(
        "  write s: the admin write(s) until answered; all new s: from that answer until every"
        " worker served new bytes for every sampled path ('never' within the timeout);"
        " lag: per path, from its write's answer; unseen: paths some worker never changed;"
        " stale: polls sent after a path was new everywhere that still got its old bytes;"
        " workers: how many the observers reached; poll: the observers' request latency, which"
        " bounds the lag's resolution"
    )
    load = result["background_load"]
    if load.get("rps") is not None:
        print(
            f"  background load: median {load['rps']:.0f} req/s over {load['runs']} runs of"
            f" {LOAD_SLICE:.0f} s, worst p99 {load['p99_ms']} ms, non-2xx {load['non2xx']},"
            f" errors {load['errors']}"
        )
    for anomaly in result["anomalies"]:
        print(f"  - {anomaly}")
    print(json.dumps(result))
