"""`csip conformance ...`: run a campaign (device mode or server mode), re-render results."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out)
    return Path("conformance") / "results" / time.strftime("%Y%m%d-%H%M%S")


def cmd_run(args: argparse.Namespace) -> int:
    from csip.conformance import procedures as catalogue
    from csip.conformance import results

    if bool(args.devices) == bool(args.server):
        print("csip: error: give either --devices LAB.toml or --server URL", file=sys.stderr)
        return 2
    try:
        loaded = catalogue.load_all(args.procedures_dir)
    except catalogue.ProcedureError as exc:
        print(f"csip: error: {exc}", file=sys.stderr)
        return 1
    chosen = catalogue.select(loaded, args.procedures)
    if not chosen:
        print(f"csip: error: no procedure matches {args.procedures!r}", file=sys.stderr)
        return 2
    out = _out_dir(args)
    campaign: Any
    if args.devices:
        from csip.conformance.lab import load_lab
        from csip.conformance.runner import LabError, run_lab
        from csip.errors import CsipError

        try:
            lab = load_lab(Path(args.devices))
        except catalogue.ProcedureError as exc:
            print(f"csip: error: {exc}", file=sys.stderr)
            return 1
        try:
            campaign = asyncio.run(run_lab(lab, chosen, out))
        except (LabError, CsipError) as exc:
            print(f"csip: error: {exc}", file=sys.stderr)
            return 1
    else:
        from csip.conformance.admin import adapter_from_spec
        from csip.conformance.servermode import ServerTarget, run_server_mode

        if not args.client_cert or not args.ca:
            print("csip: error: --server needs --client-cert and --ca", file=sys.stderr)
            return 2
        target = ServerTarget(
            args.server,
            Path(args.client_cert),
            Path(args.client_key) if args.client_key else None,
            Path(args.ca),
            Path(args.second_cert) if args.second_cert else None,
            Path(args.receiver_cert) if args.receiver_cert else None,
            Path(args.receiver_key) if args.receiver_key else None,
        )
        admin = adapter_from_spec(args.admin) if args.admin else None
        campaign = asyncio.run(run_server_mode(target, chosen, admin))
    paths = results.write_all(campaign, out)
    counts = campaign.counts()
    print(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors, "
        f"{counts['not-applicable']} not applicable"
    )
    print(f"report: {paths['html']}\nJUnit: {paths['junit']}\nresults: {paths['json']}")
    return 0 if campaign.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from csip.conformance import results

    try:
        campaign = results.load(Path(args.results))
    except (OSError, ValueError, KeyError) as exc:
        print(f"csip: error: cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    source = Path(args.results)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent)
    paths = results.write_all(campaign, out)
    print(f"report: {paths['html']}\nJUnit: {paths['junit']}")
    return 0 if campaign.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    from csip.conformance import procedures as catalogue

    for procedure in catalogue.select(catalogue.load_all(args.procedures_dir), args.procedures):
        status = procedure.status if procedure.status != "ready" else procedure.side
        print(f"{procedure.id}\t{status}\t{procedure.title}")
    return 0


def add_conformance_parser(commands: Any) -> None:
    parser = commands.add_parser("conformance", help="the conformance harness (test labs)")
    sub = parser.add_subparsers(dest="conformance_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run a campaign: --devices LAB.toml (devices under test) or --server URL"
    )
    run.add_argument("--devices", help="lab.toml: the devices under test (device mode)")
    run.add_argument("--server", help="URL of a 2030.5 server to test (server mode)")
    run.add_argument("--client-cert", help="server mode: PEM certificate (chain) of a device")
    run.add_argument("--client-key", help="server mode: its key (default: in --client-cert)")
    run.add_argument("--second-cert", help="server mode: another device's combined PEM")
    run.add_argument(
        "--receiver-cert", help="server mode: TLS certificate of the notification receiver"
    )
    run.add_argument("--receiver-key", help="server mode: its key")
    run.add_argument("--ca", help="server mode: the SERCA PEM the server chains to")
    run.add_argument(
        "--admin", help="server mode: admin adapter, e.g. csip:http://127.0.0.1:8444:TOKEN"
    )
    run.add_argument("--procedures", help="comma-separated ID globs, e.g. CORE-*,BASIC-0*")
    run.add_argument("--procedures-dir", type=Path, help="default conformance/procedures")
    run.add_argument("--out", help="results directory (default conformance/results/TIME)")
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="re-render results.json as HTML and JUnit XML")
    report.add_argument("results", help="results.json or the directory holding it")
    report.add_argument("--out", help="where to write (default beside results.json)")
    report.set_defaults(func=cmd_report)
    listing = sub.add_parser("list", help="list the procedures")
    listing.add_argument("--procedures", help="comma-separated ID globs")
    listing.add_argument("--procedures-dir", type=Path)
    listing.set_defaults(func=cmd_list)
