"""Wiring: load schemas, open the store, build services and start every listener."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from csip.config import Settings
from csip.domain.clock import Clock
from csip.errors import ConfigError
from csip.sep2 import schema
from csip.services.admin import AdminService
from csip.services.bus import LocalBus, PgBus, asyncpg_dsn
from csip.services.sep2 import Sep2Service
from csip.store import Store
from csip.web import admin_app, sep2_app
from csip.web.identity import IdentityResolver
from csip.web.tls import server_context

log = logging.getLogger(__name__)


def tls_context(settings: Settings) -> ssl.SSLContext:
    ca, chain, key = settings.tls_files()
    for path, what in ((ca, "CA (SERCA)"), (chain, "server certificate"), (key, "server key")):
        if not path.is_file():
            raise ConfigError(
                f"{what} file {path} is missing: run `csip certs init` (test PKI) "
                "or set ca_file/cert_file/key_file"
            )
    return server_context(
        ca_file=ca,
        cert_chain_file=chain,
        key_file=key,
        strict_ccm8=settings.tls_strict_ccm8,
        allow_tls13=settings.tls_allow_tls13,
    )


@dataclass
class Server:
    """One csip process: the 2030.5 listener, the admin listener, optional redirect."""

    settings: Settings
    clock: Clock = field(default_factory=Clock)
    runners: list[web.AppRunner] = field(default_factory=list)
    store: Store | None = None
    bus: LocalBus | None = None
    sep2: Sep2Service | None = None
    admin: AdminService | None = None
    sep2_port: int = 0
    admin_port: int = 0
    redirect_port: int = 0

    async def start(self) -> None:
        settings = self.settings
        schemas = schema.load(settings.profile, settings.schema_dir)
        context = tls_context(settings)
        self.store = Store(settings.db_url)
        await self.store.migrate()
        if self.store.dialect == "postgresql":
            self.bus = PgBus(asyncpg_dsn(settings.db_url))
        else:
            self.bus = LocalBus()
        await self.bus.start()
        self.sep2 = Sep2Service(self.store, settings, self.clock, schemas, self.bus)
        self.admin = AdminService(self.sep2)
        identity = IdentityResolver(settings.trusted_proxies, settings.forwarded_cert_header)
        sep2 = sep2_app.create_app(self.sep2, identity)
        self.sep2_port = await self._listen(sep2, settings.host, settings.sep2_port, context)
        admin = admin_app.create_app(self.admin)
        self.admin_port = await self._listen(admin, settings.admin_host, settings.admin_port)
        if settings.http_redirect_port:
            redirect = sep2_app.create_redirect_app(self.sep2_port)
            self.redirect_port = await self._listen(
                redirect, settings.host, settings.http_redirect_port
            )

    async def _listen(
        self, app: web.Application, host: str, port: int, context: ssl.SSLContext | None = None
    ) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=context, backlog=1024)
        await site.start()
        self.runners.append(runner)
        address = runner.addresses[-1]
        return int(address[1])

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()
        if self.bus is not None:
            await self.bus.stop()
        if self.store is not None:
            await self.store.close()

    def urls(self) -> dict[str, str]:
        host = "localhost" if self.settings.host in ("127.0.0.1", "::1") else self.settings.host
        admin_host = self.settings.admin_host
        urls = {
            "sep2": f"https://{host}:{self.sep2_port}/dcap",
            "admin": f"http://{admin_host}:{self.admin_port}/api/status",
            "openapi": f"http://{admin_host}:{self.admin_port}/openapi.json",
        }
        if self.redirect_port:
            urls["redirect"] = f"http://{host}:{self.redirect_port}/"
        return urls


async def serve_forever(server: Server, banner: str = "") -> None:
    await server.start()
    try:
        if banner:
            print(banner.format(**server.urls(), sep2_port=server.sep2_port), flush=True)
        await asyncio.Event().wait()
    finally:
        await server.stop()
