"""The `csip` command. Exit codes: 0 ok, 1 failed, 2 usage."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from csip.config import Settings, load_settings
from csip.errors import CsipError

_T = TypeVar("_T")

BANNER = """\
csip is serving (TEST PKI: not for production use)
  IEEE 2030.5 (mutual TLS): {sep2}
  admin API:                {admin}   (token: `csip admin token`)
  console:                  {console}
                            (first operator: `csip operators add NAME --role operator`)
  admin OpenAPI:            {openapi}
  OpenADR 3 VTN:            {vtn}   (clients: `csip clients add NAME --role bl|ven`)
Walk it with a device certificate:
  curl --cacert {ca} --cert {cert} https://localhost:{sep2_port}/dcap
Ctrl-C stops."""


def _state_options(parser: argparse.ArgumentParser) -> None:
    """The options every state-touching command shares, so they always agree on the DB."""
    parser.add_argument("--config", type=Path, help="TOML config file (also CSIP_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="where the SQLite file lives (default data)")
    parser.add_argument("--db", help="database URL, e.g. postgresql+asyncpg://user@host/db")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {"data_dir": args.data_dir, "db": args.db, **extra}
    return load_settings(args.config, overrides)


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(coroutine)


def _demo_certificate(settings: Settings) -> str:
    devices = sorted((settings.certs_dir / "devices").glob("*-combined.pem"))
    if devices:
        return str(devices[0])
    return "<device-combined.pem from `csip certs device --oem NAME --serial S`>"


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    from csip.logconfig import configure_logging
    from csip.web.server import Server, serve_forever
    from csip.web.workers import run_workers, sqlite_refusal

    settings = _settings(
        args,
        host=args.host,
        sep2_port=args.sep2_port,
        admin_port=args.admin_port,
        http_redirect_port=args.http_redirect_port,
        vtn_port=args.vtn_port,
        vtn_plain_http=True if args.vtn_plain_http else None,
        profile=args.profile,
        schema_dir=args.schema_dir,
        certs_dir=args.certs_dir,
        workers=args.workers,
        log_format=args.log_format,
        access_log=True if args.access_log else None,
    )
    refusal = sqlite_refusal(settings)
    if refusal is not None:
        print(f"csip: error: {refusal}", file=sys.stderr)
        return 2
    configure_logging(settings)
    banner = BANNER.replace("{ca}", str(settings.tls_files()[0]))
    banner = banner.replace("{cert}", _demo_certificate(settings))
    if settings.workers > 1:
        return run_workers(settings, banner)
    with contextlib.suppress(KeyboardInterrupt):
        _run(serve_forever(Server(settings), banner, stop_on=(signal.SIGTERM,)))
    return 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    from csip.services.admin import admin_token
    from csip.store import Store

    settings = _settings(args)

    async def run() -> str:
        store = Store(settings.db_url)
        try:
            await store.migrate()
            return await admin_token(store, rotate=args.rotate, data_dir=settings.data_dir)
        finally:
            await store.close()

    print(_run(run()))
    return 0


# ---- OpenADR 3 VTN clients (issue 4) ---------------------------------------------------
def _with_vtn_auth(args: argparse.Namespace, work: Callable[[Any], Coroutine[Any, Any, _T]]) -> _T:
    """Run `work(VtnAuth)` on the same database as `csip serve`, running or not."""
    from csip.domain.clock import Clock
    from csip.services.bus import LocalBus
    from csip.services.changes import Changes
    from csip.services.vtn_auth import VtnAuth
    from csip.store import Store

    settings = _settings(args)

    async def run() -> _T:
        store = Store(settings.db_url)
        try:
            await store.migrate()
            clock = Clock()
            # its changes reach a running server through the change log (PostgreSQL)
            return await work(VtnAuth(store, settings, clock, Changes(store, LocalBus(), clock)))
        finally:
            await store.close()

    return _run(run())


def cmd_clients_add(args: argparse.Namespace) -> int:
    async def work(auth: Any) -> Any:
        return await auth.create_client(args.name, args.role, args.scope or None)

    created = _with_vtn_auth(args, work)
    print(f"client_id: {created.client.client_id}")
    print(f"client_secret: {created.secret}")
    print(f"role: {created.client.role}")
    print(f"scopes: {' '.join(created.client.scopes)}")
    print("(the secret is shown only now; it is stored hashed)", file=sys.stderr)
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    async def work(auth: Any) -> Any:
        return await auth.clients()

    for client in _with_vtn_auth(args, work):
        print(f"{client.name}\t{client.role}\t{client.client_id}\t{' '.join(client.scopes)}")
    return 0


def cmd_clients_remove(args: argparse.Namespace) -> int:
    async def work(auth: Any) -> None:
        await auth.remove_client(args.name)

    _with_vtn_auth(args, work)
    print(f"removed {args.name}")
    return 0


def _add_clients_parser(commands: Any) -> None:
    from csip.openadr.rules import SCOPES

    clients = commands.add_parser("clients", help="OAuth2 clients of the OpenADR 3 VTN")
    sub = clients.add_subparsers(dest="clients_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", help="create a BL or VEN client; prints its id and secret once")
    _state_options(add)
    add.add_argument("name", help="a name for the client (letters, digits, . _ -)")
    add.add_argument("--role", choices=["bl", "ven"], required=True)
    add.add_argument(
        "--scope", action="append", choices=SCOPES, help="repeat; default: the role's scopes"
    )
    add.set_defaults(func=cmd_clients_add)
    listing = sub.add_parser("list", help="list the clients (never their secrets)")
    _state_options(listing)
    listing.set_defaults(func=cmd_clients_list)
    remove = sub.add_parser("remove", help="remove a client (its tokens stop within a minute)")
    _state_options(remove)
    remove.add_argument("name")
    remove.set_defaults(func=cmd_clients_remove)


def cmd_schemas_fetch(args: argparse.Namespace) -> int:
    from csip.sep2 import schema

    dest = args.dir or schema.default_schema_dir()
    if not args.force and schema.pinned_present(dest):
        print(f"schemas already present and verified in {dest}")
        return 0
    for path in schema.fetch(dest):
        print(f"wrote {path} (sha256 verified)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from csip.pki.cli import add_certs_parser

    parser = argparse.ArgumentParser(
        prog="csip", description="csip: IEEE 2030.5 / CSIP utility server"
    )
    parser.add_argument("--version", action="version", version="csip 0.1.0.dev0")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_certs_parser(commands)
    from csip.engine_cli import add_parsers as add_engine_parsers

    add_engine_parsers(commands)
    from csip.console_cli import add_parsers as add_console_parsers

    add_console_parsers(commands)
    from csip.devices_cli import add_parsers as add_devices_parsers

    add_devices_parsers(commands)

    serve = commands.add_parser("serve", help="run the server")
    _state_options(serve)
    serve.add_argument("--host", help="address of the 2030.5 listener (default 127.0.0.1)")
    serve.add_argument("--sep2-port", type=int, help="2030.5 mutual-TLS port (default 8443)")
    serve.add_argument("--admin-port", type=int, help="admin API port, loopback (default 8444)")
    serve.add_argument("--http-redirect-port", type=int, help="plain-HTTP redirect listener")
    serve.add_argument("--profile", choices=["csip", "csip-aus"], help="schema profile")
    serve.add_argument("--schema-dir", type=Path, help="use these XSDs instead of the pinned ones")
    serve.add_argument("--certs-dir", type=Path, help="test PKI directory (default certs)")
    serve.add_argument("--vtn-port", type=int, help="OpenADR 3 VTN port (default 8445)")
    serve.add_argument(
        "--vtn-plain-http", action="store_true", help="serve the VTN over plain HTTP (labs only)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="processes sharing each port (default 1; more than 1 needs PostgreSQL)",
    )
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="log lines as text (default) or JSON"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="one log line per request (logger csip.access)"
    )
    serve.set_defaults(func=cmd_serve)

    admin = commands.add_parser("admin", help="administration")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    token = admin_commands.add_parser("token", help="print (or --rotate) the admin API token")
    _state_options(token)
    token.add_argument("--rotate", action="store_true", help="replace the token")
    token.set_defaults(func=cmd_admin_token)

    _add_clients_parser(commands)

    from csip.conformance.cli import add_conformance_parser

    add_conformance_parser(commands)

    from csip.conformance.sim.cli import add_sim_parser

    add_sim_parser(commands)

    schemas = commands.add_parser("schemas", help="obtain the pinned 2030.5 XSDs")
    schema_commands = schemas.add_subparsers(
        dest="schemas_command", required=True, metavar="COMMAND"
    )
    fetch = schema_commands.add_parser("fetch", help="download and verify the pinned XSDs")
    fetch.add_argument("--dir", type=Path, help="destination (default schemas/xsd)")
    fetch.add_argument("--force", action="store_true", help="download even if present")
    fetch.set_defaults(func=cmd_schemas_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CsipError as exc:
        print(f"csip: error: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
