"""Wiring: load schemas, open the store, build services and start every listener."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from csip.config import Settings
from csip.domain.clock import Clock
from csip.errors import ConfigError
from csip.sep2 import schema
from csip.services.admin import AdminService
from csip.services.bus import LocalBus, PgBus, asyncpg_dsn
from csip.services.outbox import OutboxWorker, WebhookSender
from csip.services.sep2 import Sep2Service
from csip.services.subscriptions import Sep2Notifier
from csip.services.vtn import VtnService
from csip.services.vtn_auth import VtnAuth
from csip.services.vtn_notify import MqttSender, SafeResolver
from csip.store import Store
from csip.web import admin_app, limits, sep2_app, sep2_programs, vtn_app
from csip.web.identity import IdentityResolver
from csip.web.tls import client_context, server_context

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
    # ---- OpenADR 3 VTN and the outbox (issue 4) ----
    outbox: OutboxWorker | None = None
    webhooks: WebhookSender | None = None
    mqtt: MqttSender | None = None
    vtn_auth: VtnAuth | None = None
    vtn: VtnService | None = None
    vtn_port: int = 0
    notifier: Sep2Notifier | None = None
    #: Called once with the 2030.5 app before it starts (the conformance harness records
    #: exchanges this way); None, the default, adds nothing to the request path.
    sep2_hook: Callable[[web.Application], None] | None = None

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
        if self.sep2_hook is not None:
            self.sep2_hook(sep2)
        self.sep2_port = await self._listen(sep2, settings.host, settings.sep2_port, context)
        admin = admin_app.create_app(self.admin)
        await self._start_vtn(admin)
        self._start_notifications(sep2)
        assert self.outbox is not None
        await self.outbox.start()
        self.admin_port = await self._listen(admin, settings.admin_host, settings.admin_port)
        if settings.http_redirect_port:
            redirect = sep2_app.create_redirect_app(self.sep2_port)
            self.redirect_port = await self._listen(
                redirect, settings.host, settings.http_redirect_port
            )

    async def _start_vtn(self, admin: web.Application) -> None:
        """The outbox worker, then the OpenADR 3 VTN listener (HTTPS, or HTTP for labs)."""
        settings = self.settings
        assert self.store is not None and self.bus is not None
        self.outbox = OutboxWorker(
            self.store,
            self.clock,
            [float(d) for d in settings.outbox_retry_delays],
            settings.outbox_max_attempts,
        )
        resolver = SafeResolver(settings.vtn_webhook_allow_loopback)
        self.webhooks = WebhookSender(
            settings.vtn_webhook_timeout, resolver=resolver, url_guard=resolver.check_literal
        )
        self.outbox.register("webhook", self.webhooks)
        if settings.vtn_mqtt_url:
            try:
                self.mqtt = MqttSender(settings.vtn_mqtt_url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
            self.outbox.register("mqtt", self.mqtt)
        self.vtn_auth = VtnAuth(self.store, settings, self.clock)
        await self.vtn_auth.start()
        admin[vtn_app.VTN_AUTH] = self.vtn_auth
        self.vtn = VtnService(
            self.store, settings, self.clock, self.bus, self.vtn_auth, self.outbox
        )
        context = None if settings.vtn_plain_http else vtn_app.vtn_tls_context(settings)
        app = vtn_app.create_app(self.vtn)
        self.vtn_port = await self._listen(app, settings.host, settings.vtn_port, context)

    def _start_notifications(self, sep2: web.Application) -> None:
        """2030.5 notifications (issue 3): mutual TLS with the server's own certificate."""
        assert self.outbox is not None and self.sep2 is not None
        settings = self.settings
        ca, chain, key = settings.tls_files()
        subscriptions = sep2[sep2_programs.SUBSCRIPTIONS]
        host = "localhost" if settings.host in ("127.0.0.1", "::1") else settings.host
        subscriptions.public_base = (
            settings.sep2_public_url.rstrip("/") or f"https://{host}:{self.sep2_port}"
        )
        context = client_context(ca_file=ca, cert_chain_file=chain, key_file=key)
        resolver = None if settings.notification_allow_private else SafeResolver(False)
        self.notifier = Sep2Notifier(subscriptions, context, resolver=resolver)
        self.outbox.register("sep2", self.notifier)
        self.sep2.wake_outbox = self.outbox.wake

    async def _listen(
        self, app: web.Application, host: str, port: int, context: ssl.SSLContext | None = None
    ) -> int:
        # timeouts, connection caps and the face's error bodies: web/limits.py
        runner, bound = await limits.listen(app, self.settings, host, port, context)
        self.runners.append(runner)
        return bound

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()
        if self.outbox is not None:
            await self.outbox.stop()
        for sender in (self.webhooks, self.mqtt, self.notifier):
            if sender is not None:
                await sender.close()
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
        scheme = "http" if self.settings.vtn_plain_http else "https"
        urls["vtn"] = f"{scheme}://{host}:{self.vtn_port}{self.settings.vtn_base_path}"
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
