"""A device-mode conformance campaign at scale: N simulated devices from the ten built-in OEM
profiles, every device judged on the chosen CORE and BASIC procedures at once. Prints the wall
time, the CPU of csip (with the harness, in one process), the simulator's CPU, and the largest
timing error of any expectation (target: under 1 s, so timing judgements stay honest under
load). Figures are printed, never asserted.

Set-up (not timed): a fresh test PKI in a temporary directory and N device certificates
(`devices/sim-NNNNNN`, the names `csip sim --fleet N --pki DIR` uses), a lab.toml of N devices
(device i runs OEM profile i mod 10: batteries and PV inverters of different sizes). The
harness runs csip in this process, pinned to core 0; the first device's command starts one
`csip sim --fleet N` process pinned to core 1 that drives all N devices (one process, asyncio;
N processes of a lab device each would measure Python start-up, not csip), the others are
"external" devices of the lab (no command). Every device gets its own groups, programs and
controls per procedure; a device's procedures run one after another, the devices concurrently.

    .venv/bin/python bench/campaign.py                       # 200 devices, the default set
    .venv/bin/python bench/campaign.py --devices 50 --procedures CORE-012,BASIC-016
    .venv/bin/python bench/campaign.py --procedures 'CORE-*,BASIC-*'   # hours: every one

The default set is bounded (a few minutes): CORE-012 (event status Responses at start and
end), CORE-022 (Received/Started/Completed/Cancelled), BASIC-016 (defaults) and BASIC-029
(readings at the postRate), at pollRates of 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CLIENT_CORE, SERVER_CORE, csip_bin, log, terminate_on_signal
from csip.conformance import procedures as catalogue
from csip.conformance.lab import load_lab
from csip.conformance.runner import run_lab
from csip.conformance.sim.profiles import builtin_profiles
from csip.pki import testpki

DEFAULT_PROCEDURES = "CORE-012,CORE-022,BASIC-016,BASIC-029"
FUNCTION_SETS = ["DER", "Response", "MirrorMetering", "Time"]


def lab_toml(directory: Path, pki: Path, devices: int, poll: int) -> Path:
    profiles = builtin_profiles()
    rates = ", ".join(
        f"{name} = {poll}"
        for name in (
            "DERProgramList",
            "DeviceCapability",
            "EndDeviceList",
            "FunctionSetAssignmentsList",
            "Time",
            "DERList",
            "MirrorUsagePointList",
        )
    )
    sim = ["taskset", "-c", CLIENT_CORE, csip_bin(), "sim", "--server", "{url}", "--ca", "{ca}"]
    sim += ["--fleet", str(devices), "--pki", str(pki), "--duration", "0"]
    sim += ["--ramp", str(min(poll, 10))]
    text = [
        f'[campaign]\nname = "{devices} simulated devices"\nconcurrency = {devices}\n'
        f"poll_rates = {{ {rates} }}\n"
        f'[server]\ncerts_dir = "{pki}"\n'
    ]
    for i in range(devices):
        serial = f"{i:06d}"
        chain = pki / "devices" / f"sim-{serial}.pem"
        if not chain.exists():
            chain = testpki.issue_device(pki, "sim", serial).cert_path
        profile = profiles[i % len(profiles)]
        device_class = "pv" if profile.kind == "pv" else "storage"
        entry = (
            f'[[device]]\nname = "sim-{serial}-{profile.name}"\nclass = "{device_class}"\n'
            f'function_sets = {json.dumps(FUNCTION_SETS)}\ncertificate = "{chain}"\n'
        )
        if i == 0:  # the one process that drives the whole fleet
            entry += f'restart = "once"\ncommand = {json.dumps(sim)}\n'
        text.append(entry)
    path = directory / "lab.toml"
    path.write_text("\n".join(text))
    return path


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--procedures", default=DEFAULT_PROCEDURES)
    parser.add_argument("--poll", type=int, default=10, help="every campaign pollRate (s)")
    parser.add_argument("--keep", action="store_true", help="keep the directory (results)")
    args = parser.parse_args(argv)
    chosen = catalogue.select(catalogue.load_all(), args.procedures)
    chosen = [p for p in chosen if p.side == "client" and p.status == "ready"]
    if not chosen:
        raise SystemExit(f"no client-side procedure in {args.procedures!r}")
    directory = Path(tempfile.mkdtemp(prefix="csip-campaign-"))
    try:
        with terminate_on_signal():
            pki = directory / "pki"
            testpki.init_pki(pki)
            log(f"issuing {args.devices} device certificates")
            lab = load_lab(lab_toml(directory, pki, args.devices, args.poll))
            os.sched_setaffinity(0, {int(SERVER_CORE)})
            log(
                f"campaign: {args.devices} devices x {len(chosen)} procedures "
                f"({', '.join(p.id for p in chosen)}), csip + harness on core {SERVER_CORE}, "
                f"csip sim on core {CLIENT_CORE}"
            )
            cpu0, wall0 = cpu_seconds(resource.RUSAGE_SELF), time.monotonic()
            campaign = asyncio.run(run_lab(lab, chosen, directory / "results", stream=None))
            wall = time.monotonic() - wall0
            cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu0
            sim_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
            report(args, campaign, chosen, wall, cpu, sim_cpu, directory)
    finally:
        if args.keep:
            log(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace,
    campaign: object,
    chosen: list[catalogue.Procedure],
    wall: float,
    cpu: float,
    sim_cpu: float,
    directory: Path,
) -> None:
    from csip.conformance.results import Campaign

    assert isinstance(campaign, Campaign)
    errors = sorted(
        e.timing_error
        for r in campaign.results
        for e in r.expectations
        if e.timing_error is not None
    )
    largest = campaign.largest_timing_error()
    counts = campaign.counts()
    exchanges = sum(len(r.exchanges) for r in campaign.results)

    def pct(q: float) -> float:
        return errors[min(len(errors) - 1, int(q * len(errors)))] if errors else 0.0

    print()
    print(f"campaign: {args.devices} devices (10 OEM profiles) x {len(chosen)} procedures")
    print(f"  procedures          {', '.join(p.id for p in chosen)}; pollRates {args.poll} s")
    print(f"  results             {counts}")
    print(f"  wall time           {wall:.0f} s")
    print(f"  csip + harness CPU  {cpu:.1f} s ({100 * cpu / wall:.0f}% of core {SERVER_CORE})")
    print(f"  csip sim CPU        {sim_cpu:.1f} s (all {args.devices} devices, one process)")
    print(f"  exchanges recorded  {exchanges}")
    print(
        f"  timing error        largest {largest[0] if largest else 0:.2f} s "
        f"({largest[1] if largest else '-'}), p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s "
        f"over {len(errors)} timed expectations (target: largest < 1 s)"
    )
    if counts["fail"] or counts["error"]:
        failing = sorted({f"{r.procedure}:{r.device}" for r in campaign.results
                          if r.outcome in ("fail", "error")})  # fmt: skip
        print(f"  failing             {len(failing)}: {', '.join(failing[:10])}")
    print(
        json.dumps(
            {
                "devices": args.devices,
                "procedures": [p.id for p in chosen],
                "poll": args.poll,
                "counts": counts,
                "wall_s": round(wall, 1),
                "csip_cpu_s": round(cpu, 1),
                "sim_cpu_s": round(sim_cpu, 1),
                "largest_timing_error_s": round(largest[0], 3) if largest else None,
                "timing_error_p50_s": round(pct(0.5), 3),
                "timing_error_p99_s": round(pct(0.99), 3),
                "results": str(directory / "results") if args.keep else None,
            }
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
