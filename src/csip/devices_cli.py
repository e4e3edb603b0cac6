"""`csip devices import FILE`: bulk EndDevice pre-registration from CSV, on the same database
as `csip serve`, whether or not it is running (a running server hears of the devices through
the change log, as with every state-touching command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_import(args: argparse.Namespace) -> int:
    from csip.cli import _run, _settings
    from csip.domain.clock import Clock
    from csip.errors import CsipError
    from csip.progress import progress
    from csip.sep2 import schema
    from csip.services.admin import AdminService
    from csip.services.bus import LocalBus
    from csip.services.changes import Changes
    from csip.services.device_import import DeviceImport, ImportReport, read_csv
    from csip.services.sep2 import Sep2Service
    from csip.store import Store

    settings = _settings(args)
    path: Path = args.file
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CsipError(f"cannot read {path}: {exc.strerror or exc}") from exc
    lines, unreadable = read_csv(text)
    if args.chunk < 1:
        raise CsipError("--chunk must be at least 1")

    async def run() -> ImportReport:
        store = Store(settings.db_url)
        try:
            await store.migrate()
            clock = Clock()
            changes = Changes(store, LocalBus(), clock)
            sep2 = Sep2Service(store, settings, clock, schema.load(settings.profile), changes)
            importer = DeviceImport(AdminService(sep2))
            with progress(f"importing {path.name}", len(lines)) as bar:
                return await importer.run(lines, args.chunk, bar.advance)
        finally:
            await store.close()

    report = _run(run())
    errors = sorted(unreadable + report.errors)
    for number, reason in errors:
        print(f"{path}:{number}: {reason}", file=sys.stderr)
    print(
        f"{report.created} created, {report.updated} updated, {report.joined} added to groups, "
        f"{len(errors)} line(s) refused"
    )
    return 1 if errors else 0


def add_parsers(commands: Any) -> None:
    from csip.cli import _state_options

    devices = commands.add_parser("devices", help="EndDevices in bulk")
    sub = devices.add_subparsers(dest="devices_command", required=True, metavar="COMMAND")
    imp = sub.add_parser(
        "import",
        help="pre-register EndDevices from a CSV (columns lfdi, sfdi, pin, aggregator, group)",
        description=(
            "Pre-register EndDevices from a CSV with a header line naming its columns: lfdi "
            "(required), sfdi (derived from the lfdi when empty, checked when given), pin "
            "(default: the configured default_pin), aggregator (its name), group (its id, "
            "description or target). Bad lines are reported with their line numbers and the "
            "rest are imported; importing again changes nothing. Exit code 1 if a line was "
            "refused."
        ),
    )
    _state_options(imp)
    imp.add_argument("file", type=Path, help="the CSV file (- for standard input)")
    imp.add_argument("--chunk", type=int, default=500, help="lines per transaction (500)")
    imp.set_defaults(func=cmd_import)
