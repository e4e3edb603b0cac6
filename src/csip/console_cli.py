"""`csip operators ...` (console accounts) and `csip demo` (data every console page can show),
on the same database as `csip serve`, whether or not it is running."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def _with_operators(args: argparse.Namespace, work: Callable[[Any], Coroutine[Any, Any, _T]]) -> _T:
    from csip.cli import _run, _settings
    from csip.domain.clock import Clock
    from csip.services.bus import LocalBus
    from csip.services.changes import Changes
    from csip.services.operators import OperatorService
    from csip.store import Store

    settings = _settings(args)

    async def run() -> _T:
        store = Store(settings.db_url)
        try:
            await store.migrate()
            clock = Clock()
            return await work(OperatorService(store, clock, Changes(store, LocalBus(), clock)))
        finally:
            await store.close()

    return _run(run())


def read_password(prompt_twice: bool = True) -> str:
    """From the terminal (asked twice), or the first line of standard input when piped."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if prompt_twice and getpass.getpass("again: ") != first:
        print("csip: error: the passwords differ", file=sys.stderr)
        raise SystemExit(1)
    return first


def cmd_operators_add(args: argparse.Namespace) -> int:
    password = read_password()

    async def work(operators: Any) -> Any:
        return await operators.add(args.name, args.role, password)

    operator = _with_operators(args, work)
    print(f"operator {operator.name} added ({operator.role}); log in at /console")
    return 0


def cmd_operators_list(args: argparse.Namespace) -> int:
    from csip.domain.clock import Clock

    async def work(operators: Any) -> Any:
        return await operators.operators()

    now = Clock().now_int()
    for operator in _with_operators(args, work):
        state = "locked" if operator.locked(now) else "ok"
        print(f"{operator.name}\t{operator.role}\t{state}")
    return 0


def cmd_operators_remove(args: argparse.Namespace) -> int:
    async def work(operators: Any) -> None:
        await operators.remove(args.name)

    _with_operators(args, work)
    print(f"removed {args.name} (their sessions end now)")
    return 0


def cmd_operators_unlock(args: argparse.Namespace) -> int:
    async def work(operators: Any) -> None:
        await operators.unlock(args.name)

    _with_operators(args, work)
    print(f"unlocked {args.name}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from csip.cli import _run, _settings
    from csip.services.demo import load_demo

    settings = _settings(args)
    summary = _run(load_demo(settings, devices=args.devices))
    print(summary)
    return 0


def add_parsers(commands: Any) -> None:
    from csip.cli import _state_options
    from csip.domain.operators import ROLES

    operators = commands.add_parser("operators", help="operator accounts of the console")
    sub = operators.add_subparsers(dest="operators_command", required=True, metavar="COMMAND")
    add = sub.add_parser(
        "add",
        help="create an operator; the password is asked for (or read from standard input)",
    )
    _state_options(add)
    add.add_argument("name", help="login name (letters, digits, . _ @ -)")
    add.add_argument("--role", choices=ROLES, required=True)
    add.set_defaults(func=cmd_operators_add)
    listing = sub.add_parser("list", help="list the operators and whether they are locked")
    _state_options(listing)
    listing.set_defaults(func=cmd_operators_list)
    remove = sub.add_parser("remove", help="remove an operator (their sessions end)")
    _state_options(remove)
    remove.add_argument("name")
    remove.set_defaults(func=cmd_operators_remove)
    unlock = sub.add_parser("unlock", help="lift a lockout after repeated wrong passwords")
    _state_options(unlock)
    unlock.add_argument("name")
    unlock.set_defaults(func=cmd_operators_unlock)

    demo = commands.add_parser(
        "demo",
        help="load demo data: groups, simulated devices with telemetry, a program and events",
    )
    _state_options(demo)
    demo.add_argument("--devices", type=int, default=50, help="how many devices (default 50)")
    demo.set_defaults(func=cmd_demo)
