"""`csip sim`: simulated OEM devices against a 2030.5 server, for labs and load.

Certificates, three ways:

* one device: ``--cert`` (its chain or combined PEM; ``--key`` if separate);
* a fleet of N devices, each with its own certificate: ``--fleet N --pki DIR`` issues device
  certificates ``devices/sim-000000..`` from the test PKI in DIR (reused when present), and
  each device registers in band;
* an aggregator gateway: ``--kind aggregator --cert AGG --fleet N``: one aggregator
  certificate (``csip certs aggregator``; attach it with the admin API first) managing N
  EndDevices over one connection pool. This is the cheap way to drive thousands of devices.

Kinds: battery, subscribing-battery, pv, aggregator and faulty-<fault>; or ``--oem-profiles
FILE`` (TOML, see ``csip.conformance.sim.profiles``) handed out in turn; a fleet with neither
uses ten built-in OEM profiles. ``--speedup K`` divides every poll and post interval by K.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from csip.conformance.sim.core import OemProfile
from csip.conformance.sim.driver import (
    ERROR_KINDS,
    DeviceConfig,
    Fleet,
    Stats,
    aggregator_fleet,
    device_fleet,
)
from csip.conformance.sim.profiles import KINDS, builtin_profiles, load_profiles
from csip.errors import ConfigError
from csip.progress import Bar, progress


def add_sim_parser(commands: Any) -> None:
    sim = commands.add_parser(
        "sim", help="simulated OEM devices (one, a fleet, or an aggregator's) against a server"
    )
    sim.add_argument("--server", required=True, help="2030.5 base URL, e.g. https://localhost:8443")
    sim.add_argument("--ca", type=Path, required=True, help="the SERCA the server chains to")
    sim.add_argument("--cert", type=Path, help="device or aggregator chain / combined PEM")
    sim.add_argument("--key", type=Path, help="its key, when not in --cert")
    sim.add_argument(
        "--kind",
        choices=[*KINDS, "aggregator"],
        help="device kind (default battery; a fleet without it uses ten built-in OEM profiles)",
    )
    sim.add_argument("--fleet", type=int, default=1, help="number of devices (default 1)")
    sim.add_argument("--pki", type=Path, help="test PKI directory to issue fleet certificates in")
    sim.add_argument("--oem-profiles", type=Path, help="TOML file of OEM profiles, used in turn")
    sim.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds to run (default 60; 0 = until SIGINT/SIGTERM, as a lab.toml command)",
    )
    sim.add_argument("--speedup", type=float, default=1.0, help="divide poll/post intervals")
    sim.add_argument("--ramp", type=float, help="spread device starts over S seconds")
    sim.add_argument("--pen", type=int, default=0, help="PEN in the mRIDs devices mint")
    sim.add_argument("--notify-cert", type=Path, help="receiver certificate chain (subscribers)")
    sim.add_argument("--notify-key", type=Path, help="receiver key")
    sim.add_argument("--notify-http", action="store_true", help="plain-HTTP receiver (labs)")
    sim.add_argument("--server-pid", type=int, help="report this process's CPU share")
    sim.set_defaults(func=cmd_sim)


def _profiles(args: argparse.Namespace) -> list[OemProfile]:
    if args.oem_profiles is not None:
        return load_profiles(args.oem_profiles)
    if args.kind is not None and args.kind != "aggregator":
        return [KINDS[args.kind]]
    if args.fleet > 1:
        return builtin_profiles()
    return [KINDS["battery"]]


def _fleet_certs(pki: Path, count: int) -> list[tuple[Path, Path]]:
    """(chain, key) of `count` device certificates in the test PKI, issued when missing."""
    from csip.pki import testpki

    out: list[tuple[Path, Path]] = []
    with progress("certificates", count) as bar:
        for i in range(count):
            serial = f"{i:06d}"
            chain = pki / "devices" / f"sim-{serial}.pem"
            key = pki / "devices" / f"sim-{serial}.key"
            if not (chain.exists() and key.exists()):
                issued = testpki.issue_device(pki, "sim", serial)
                chain, key = issued.cert_path, issued.key_path
            out.append((chain, key))
            bar.advance()
    return out


def _notify_files(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    if args.notify_http:
        return None, None
    if args.notify_cert is not None:
        return args.notify_cert, args.notify_key
    # the test PKI's server certificate (valid for localhost / 127.0.0.1) when beside the CA
    chain, key = args.ca.parent / "server-chain.pem", args.ca.parent / "server.key"
    if chain.exists() and key.exists():
        return chain, key
    return None, None


async def _build(args: argparse.Namespace) -> Fleet:
    profiles = _profiles(args)
    notify_cert, notify_key = _notify_files(args)
    base = DeviceConfig(
        server=args.server,
        ca=args.ca,
        cert=args.cert or Path(),
        key=args.key,
        profile=profiles[0],
        speedup=args.speedup,
        pen=args.pen,
        notify_cert=notify_cert,
        notify_key=notify_key,
    )
    if args.kind == "aggregator":
        if args.cert is None:
            raise ConfigError("--kind aggregator needs --cert (an aggregator certificate)")
        count = args.fleet if args.fleet > 1 else 50
        return await aggregator_fleet(base, count, profiles=profiles, limit=64)
    if args.fleet > 1:
        if args.pki is None:
            raise ConfigError(
                "a fleet of devices needs --pki DIR (each gets a certificate issued there) "
                "or --kind aggregator --cert AGG (one certificate for all)"
            )
        certs = _fleet_certs(args.pki, args.fleet)
        configs = [
            dataclasses.replace(
                base,
                cert=chain,
                key=key,
                profile=profiles[i % len(profiles)],
                name=f"sim-{i:06d}",
            )
            for i, (chain, key) in enumerate(certs)
        ]
        return await device_fleet(configs)
    if args.cert is None:
        raise ConfigError("one device needs --cert (or --fleet N --pki DIR)")
    return await device_fleet([base])


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def summary(stats: Stats, devices: int, elapsed: float) -> str:
    per = max(elapsed, 1e-9)
    return (
        f"csip sim: {devices} devices for {elapsed:.1f} s\n"
        f"  walks {stats.walks} ({stats.walks / per:.1f}/s)  "
        f"requests {stats.requests} ({stats.requests / per:.1f}/s)  "
        f"responses {stats.responses}  readings {stats.readings}  "
        f"notifications {stats.notifications}  errors {stats.errors}  404s {stats.not_found}"
    )


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    built = time.monotonic()
    fleet = await _build(args)
    duration = args.duration if args.duration > 0 else None
    ramp = args.ramp if args.ramp is not None else min((duration or 40.0) / 4, 10.0)
    server_cpu = _cpu_seconds(args.server_pid) if args.server_pid else None
    own_cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    steady: list[tuple[float, Stats]] = []

    async def snapshot() -> None:
        await asyncio.sleep(ramp)
        steady.append((time.monotonic(), dataclasses.replace(fleet.stats)))

    async def show(bar: Bar) -> None:
        """The bar: seconds of the run (or a running count), what the fleet did so far."""
        shown = 0
        while True:
            await asyncio.sleep(1.0)
            s = fleet.stats
            bar.describe(
                f"{len(fleet.devices)} devices | walks {s.walks} requests {s.requests} "
                f"errors {s.errors}"
            )
            elapsed = int(time.monotonic() - started)
            bar.advance(elapsed - shown)
            shown = elapsed

    marker = asyncio.create_task(snapshot())
    with progress(f"{len(fleet.devices)} devices", int(duration) if duration else None) as bar:
        ticker = asyncio.create_task(show(bar)) if bar.drawn else None
        try:
            stats = await fleet.run(duration, stop, ramp)
        finally:
            if ticker is not None:
                ticker.cancel()
    marker.cancel()
    elapsed = time.monotonic() - started
    print(summary(stats, len(fleet.devices), elapsed))
    if steady and ramp > 0:
        at, before = steady[0]
        window = max(time.monotonic() - at, 1e-9)
        print(
            f"  after the {ramp:.0f} s ramp: walks {(stats.walks - before.walks) / window:.1f}/s  "
            f"requests {(stats.requests - before.requests) / window:.1f}/s"
        )
    print(f"  setup {started - built:.1f} s (certificates, registration)")
    if ERROR_KINDS:
        kinds = ", ".join(f"{kind} x{n}" for kind, n in ERROR_KINDS.most_common(5))
        print(f"  errors by kind: {kinds}")
    after = resource.getrusage(resource.RUSAGE_SELF)
    sim_cpu = after.ru_utime + after.ru_stime - own_cpu.ru_utime - own_cpu.ru_stime
    print(f"  simulator CPU {100 * sim_cpu / elapsed:.0f} % of one core")
    if server_cpu is not None:
        later = _cpu_seconds(args.server_pid)
        if later is not None:
            print(f"  server CPU {100 * (later - server_cpu) / elapsed:.0f} % of one core")
    sys.stdout.flush()
    return 0 if stats.walks > 0 else 1


def cmd_sim(args: argparse.Namespace) -> int:
    if args.fleet < 1:
        raise ConfigError("--fleet must be at least 1")
    from csip.cli import _run

    return _run(_main(args))
