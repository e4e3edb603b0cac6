"""`csip programs ...` and `csip groups target`: enroll 2030.5 groups in OpenADR programs
from a shell, on the same database as `csip serve`, whether or not it is running (its changes
reach a running server through the change log)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def _with_engine(args: argparse.Namespace, work: Callable[[Any], Coroutine[Any, Any, _T]]) -> _T:
    from csip.cli import _run, _settings
    from csip.domain.clock import Clock
    from csip.sep2 import schema
    from csip.services.bus import LocalBus
    from csip.services.changes import Changes
    from csip.services.engine import EngineService
    from csip.services.programs import ProgramService
    from csip.services.sep2 import Sep2Service
    from csip.store import Store

    settings = _settings(args)

    async def run() -> _T:
        store = Store(settings.db_url)
        try:
            await store.migrate()
            clock = Clock()
            changes = Changes(store, LocalBus(), clock)
            sep2 = Sep2Service(store, settings, clock, schema.load(settings.profile), changes)
            return await work(EngineService(ProgramService(sep2)))
        finally:
            await store.close()

    return _run(run())


def cmd_enroll(args: argparse.Namespace) -> int:
    async def work(engine: Any) -> Any:
        return await engine.enroll(await engine.program_id(args.program), args.group)

    enrollment = _with_engine(args, work)
    print(
        f"group {enrollment.group_id} enrolled in {args.program}: "
        f"DERProgram /derp/{enrollment.der_program_id}"
        + (f", target {enrollment.target!r}" if enrollment.target else "")
    )
    return 0


def cmd_unenroll(args: argparse.Namespace) -> int:
    async def work(engine: Any) -> Any:
        return await engine.unenroll(await engine.program_id(args.program), args.group)

    cancelled = _with_engine(args, work)
    print(f"group {args.group} left {args.program}; {len(cancelled)} control(s) cancelled")
    return 0


def cmd_enrollments(args: argparse.Namespace) -> int:
    async def work(engine: Any) -> Any:
        return await engine.enrollments(await engine.program_id(args.program))

    for e in _with_engine(args, work):
        print(f"{e.group_id}\t{e.target or '-'}\t/derp/{e.der_program_id}")
    return 0


def cmd_target(args: argparse.Namespace) -> int:
    async def work(engine: Any) -> Any:
        return await engine.set_target(args.group, args.target or None)

    group = _with_engine(args, work)
    print(f"group {group.id} target: {group.target or '(none)'}")
    return 0


def cmd_settle(args: argparse.Namespace) -> int:
    from csip.services.settlement import SettlementService

    async def work(engine: Any) -> Any:
        return await SettlementService(engine.programs).settle(args.event)

    settled = _with_engine(args, work)
    print(settled.csv(), end="")
    return 0


def add_parsers(commands: Any) -> None:
    from csip.cli import _state_options

    programs = commands.add_parser("programs", help="enroll 2030.5 groups in OpenADR programs")
    sub = programs.add_subparsers(dest="programs_command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("enroll", cmd_enroll, "enroll a group: it gets a DERProgram and the program's events"),
        ("unenroll", cmd_unenroll, "a group leaves: its DERProgram is deleted"),
    ):
        parser = sub.add_parser(name, help=text)
        _state_options(parser)
        parser.add_argument("program", help="OpenADR program id or programName")
        parser.add_argument("group", type=int, help="group (FunctionSetAssignments) id")
        parser.set_defaults(func=func)
    listing = sub.add_parser("enrollments", help="the groups enrolled in a program")
    _state_options(listing)
    listing.add_argument("program", help="OpenADR program id or programName")
    listing.set_defaults(func=cmd_enrollments)

    settle = commands.add_parser(
        "settle", help="CSV: each site's and aggregator's energy above baseline for an event"
    )
    _state_options(settle)
    settle.add_argument("event", help="OpenADR event id")
    settle.set_defaults(func=cmd_settle)

    groups = commands.add_parser("groups", help="2030.5 groups")
    gsub = groups.add_subparsers(dest="groups_command", required=True, metavar="COMMAND")
    target = gsub.add_parser("target", help="set (or with '' clear) a group's OpenADR target")
    _state_options(target)
    target.add_argument("group", type=int)
    target.add_argument("target")
    target.set_defaults(func=cmd_target)
