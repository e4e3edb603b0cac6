"""`csip sim --fleet N` against csip: walks (polls) per second sustained at CSIP's default
poll rates, and csip's CPU share. Figures are printed, never asserted.

Set-up (not measured): a fresh test PKI, `csip serve` pinned to core 0 on SQLite, one
aggregator certificate attached through the admin API, N EndDevices pre-registered for it in
bulk (the LFDIs `csip sim --kind aggregator` derives), one group holding them all with one
program and one long DERControl, so that a device's walk is FSA list -> DERProgramList ->
DERControlList (3 GETs, CSIP's hot path).

Load: `csip sim --kind aggregator --fleet N` pinned to core 1: one aggregator certificate,
one keep-alive pool, each EndDevice with its own simulated core walking at the server's
pollRate (300 s, CSIP's default for these lists) divided by --speedup (a compressed run: at
--speedup 10, 10,000 devices walk as 100,000 would at the real rate). Devices start spread over
one poll interval; the rate is measured after that ramp. `announces = false`: no DER
documents or readings, polling alone.

    .venv/bin/python bench/sim_fleet.py --devices 10000 --speedup 10 --duration 90
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CLIENT_CORE,
    Admin,
    csip_bin,
    free_port,
    log,
    spawn,
    terminate_on_signal,
    wait_until,
)

PROFILE = """[profiles.bench]
kind = "battery"
announces = false
"""


def managed_lfdi(aggregator_lfdi: str, index: int) -> str:
    """csip.conformance.sim.driver.managed_lfdi (kept import-free here)."""
    return hashlib.sha256(f"{aggregator_lfdi}/{index}".encode()).hexdigest()[:40].upper()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--batch", type=int, default=2000, help="bulk pre-registration batch")
    args = parser.parse_args(argv)
    csip = csip_bin()
    with tempfile.TemporaryDirectory(prefix="csip-simbench-") as tmp, terminate_on_signal():
        work = Path(tmp)
        pki, data = work / "pki", work / "data"
        subprocess.run([csip, "certs", "init", "--dir", str(pki)], check=True, timeout=120,
                       capture_output=True)  # fmt: skip
        agg = subprocess.run(
            [csip, "certs", "aggregator", "sim-agg", "--dir", str(pki)],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        agg_lfdi = next(line.split(": ", 1)[1] for line in agg.splitlines() if "lfdi" in line)
        sep2_port, admin_port = free_port(), free_port()
        server = spawn(
            "csip",
            [csip, "serve", "--data-dir", str(data), "--certs-dir", str(pki),
             "--sep2-port", str(sep2_port), "--admin-port", str(admin_port), "--vtn-port", "0"],
            work,
        )  # fmt: skip
        try:
            token = subprocess.run(
                [csip, "admin", "token", "--data-dir", str(data)],
                check=True, capture_output=True, text=True, timeout=60,
            ).stdout.strip()  # fmt: skip
            admin = Admin(admin_port, token)
            wait_until(lambda: admin.call("GET", "/api/status"), server, 60, "starting csip")
            admin.call("POST", "/api/aggregators", {"name": "sim-agg"})
            admin.call("PUT", f"/api/aggregators/sim-agg/certificates/{agg_lfdi}", {})
            lfdis = [managed_lfdi(agg_lfdi, i) for i in range(args.devices)]
            t0 = time.perf_counter()
            for offset in range(0, len(lfdis), args.batch):
                batch = lfdis[offset : offset + args.batch]
                admin.call(
                    "POST",
                    "/api/end-devices",
                    [{"lfdi": x, "aggregator": "sim-agg"} for x in batch],
                )
            group = admin.call("POST", "/api/groups", {"description": "fleet"})
            admin.call("POST", f"/api/groups/{group['id']}/members", {"lfdis": lfdis})
            program = admin.call(
                "POST", f"/api/groups/{group['id']}/programs", {"description": "p", "primacy": 1}
            )
            now = int(admin.call("GET", "/api/clock")["now"])
            admin.call(
                "POST",
                f"/api/programs/{program['id']}/controls",
                {"controls": [{"start": now + 60, "duration": 86400,
                               "base": {"opModMaxLimW": 5000}}]},
            )  # fmt: skip
            log(f"set-up: {args.devices} EndDevices, group, program in "
                f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
            profiles = work / "profiles.toml"
            profiles.write_text(PROFILE)
            ramp = 300 / args.speedup
            command = [
                "taskset", "-c", CLIENT_CORE, csip, "sim",
                "--server", f"https://localhost:{sep2_port}", "--ca", str(pki / "ca.pem"),
                "--cert", str(pki / "aggregators" / "sim-agg-combined.pem"),
                "--kind", "aggregator", "--fleet", str(args.devices),
                "--oem-profiles", str(profiles), "--speedup", str(args.speedup),
                "--duration", str(args.duration), "--ramp", str(ramp),
                "--server-pid", str(server.pid),
            ]  # fmt: skip
            log(" ".join(command))
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.duration + 600
            )
            print(done.stdout)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            steady = re.search(r"after the .* walks ([\d.]+)/s\s+requests ([\d.]+)/s", done.stdout)
            expected = args.devices * args.speedup / 300
            if steady:
                print(
                    f"sustained {float(steady.group(1)):.1f} walks/s of {expected:.1f} expected "
                    f"({args.devices} devices, pollRate 300 s / speedup {args.speedup:g}); "
                    f"{float(steady.group(2)):.1f} requests/s"
                )
        finally:
            server.popen.terminate()
            server.popen.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
