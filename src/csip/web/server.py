"""Listening: bind every listener, settle the ports, build the app (csip.app) and serve it.

`Server` is one csip process. With `reuse_port` (several workers, csip.web.workers) each
listener is bound with SO_REUSEPORT, so the kernel spreads new connections over the workers
that listen on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from csip.app import App, build, public_host
from csip.config import Settings
from csip.domain.clock import Clock
from csip.errors import ConfigError
from csip.services.admin import AdminService
from csip.services.bus import LocalBus
from csip.services.outbox import OutboxWorker, WebhookSender
from csip.services.sep2 import Sep2Service
from csip.services.subscriptions import Sep2Notifier
from csip.services.vtn import VtnService
from csip.services.vtn_auth import VtnAuth
from csip.services.vtn_notify import MqttSender
from csip.store import Store
from csip.web import limits, vtn_app
from csip.web.tls import server_context

log = logging.getLogger(__name__)

BACKLOG = 1024


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


def open_socket(
    host: str, port: int, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """A TCP socket bound to (host, port); listening unless `listen` is False (a parent
    holding a port for its workers: a bound socket that does not listen gets no connections).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # TCP keep-alive probes for every accepted connection (Linux and the BSDs copy it
        # from the listening socket): a peer that vanished is found without a per-connection
        # setsockopt (the fast lane's connections never make aiohttp's handler, which would)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


PORT_FIELDS = ("sep2_port", "admin_port", "vtn_port", "http_redirect_port")


def _host_of(settings: Settings, port_field: str) -> str:
    return settings.admin_host if port_field == "admin_port" else settings.host


def bind_all(
    settings: Settings, reuse_port: bool = False, listen: bool = True
) -> tuple[Settings, dict[str, socket.socket]]:
    """Bind every configured listener; the settings come back with the real ports (an
    ephemeral port 0 becomes the one the kernel chose)."""
    sockets: dict[str, socket.socket] = {}
    ports: dict[str, Any] = {}
    try:
        for name in PORT_FIELDS:
            port = getattr(settings, name)
            if name == "http_redirect_port" and not port:
                continue
            sock = open_socket(_host_of(settings, name), port, reuse_port, listen)
            sockets[name] = sock
            ports[name] = int(sock.getsockname()[1])
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return dataclasses.replace(settings, **ports), sockets


def urls(settings: Settings) -> dict[str, str]:
    """Where each face answers (settings with the real ports)."""
    host = public_host(settings)
    admin_host = settings.admin_host
    found = {
        "sep2": f"https://{host}:{settings.sep2_port}/dcap",
        "admin": f"http://{admin_host}:{settings.admin_port}/api/status",
        "openapi": f"http://{admin_host}:{settings.admin_port}/openapi.json",
        "console": f"http://{admin_host}:{settings.admin_port}/console",
    }
    scheme = "http" if settings.vtn_plain_http else "https"
    found["vtn"] = f"{scheme}://{host}:{settings.vtn_port}{settings.vtn_base_path}"
    if settings.http_redirect_port:
        found["redirect"] = f"http://{host}:{settings.http_redirect_port}/"
    return found


@dataclass
class Server:
    """One csip process: binds, builds (csip.app.build) and serves every listener."""

    settings: Settings
    clock: Clock = field(default_factory=Clock)
    #: Bind with SO_REUSEPORT (several workers on one port).
    reuse_port: bool = False
    runners: list[web.AppRunner] = field(default_factory=list)
    app: App | None = None
    #: Called once with the 2030.5 app before it starts (the conformance harness records
    #: exchanges this way); None, the default, adds nothing to the request path.
    sep2_hook: Callable[[web.Application], None] | None = None

    # ---- the ports actually listened on ----------------------------------------------
    @property
    def sep2_port(self) -> int:
        return self.settings.sep2_port

    @property
    def admin_port(self) -> int:
        return self.settings.admin_port

    @property
    def vtn_port(self) -> int:
        return self.settings.vtn_port

    @property
    def redirect_port(self) -> int:
        return self.settings.http_redirect_port

    # ---- what build() made (None before start) -----------------------------------------
    @property
    def store(self) -> Store | None:
        return self.app.store if self.app else None

    @property
    def bus(self) -> LocalBus | None:
        return self.app.bus if self.app else None

    @property
    def sep2(self) -> Sep2Service | None:
        return self.app.sep2 if self.app else None

    @property
    def admin(self) -> AdminService | None:
        return self.app.admin if self.app else None

    @property
    def vtn_auth(self) -> VtnAuth | None:
        return self.app.vtn_auth if self.app else None

    @property
    def vtn(self) -> VtnService | None:
        return self.app.vtn if self.app else None

    @property
    def outbox(self) -> OutboxWorker | None:
        return self.app.outbox if self.app else None

    @property
    def webhooks(self) -> WebhookSender | None:
        return self.app.webhooks if self.app else None

    @property
    def mqtt(self) -> MqttSender | None:
        return self.app.mqtt if self.app else None

    @property
    def notifier(self) -> Sep2Notifier | None:
        return self.app.notifier if self.app else None

    async def start(self) -> None:
        if self.settings.cache_pages_per_list:
            log.warning(
                "cache_pages_per_list is deprecated and ignored: every page within its list "
                "is cached (bounded by cache_max_bytes and cache_max_entries)"
            )
        context = tls_context(self.settings)
        vtn_context = (
            None if self.settings.vtn_plain_http else vtn_app.vtn_tls_context(self.settings)
        )
        settings, sockets = bind_all(self.settings, self.reuse_port)
        try:
            self.settings = settings
            self.app = app = build(settings, self.clock)
            if self.sep2_hook is not None:
                self.sep2_hook(app.sep2_app)
            await app.start()
            await self._serve(app.sep2_app, sockets.pop("sep2_port"), context)
            await self._serve(app.vtn_app, sockets.pop("vtn_port"), vtn_context)
            await self._serve(app.admin_app, sockets.pop("admin_port"))
            if app.redirect_app is not None:
                await self._serve(app.redirect_app, sockets.pop("http_redirect_port"))
        except BaseException:
            for sock in sockets.values():
                sock.close()
            await self.stop()
            raise

    async def _serve(
        self, app: web.Application, sock: socket.socket, context: ssl.SSLContext | None = None
    ) -> None:
        """One hardened listener (timeouts, connection caps, the face's error bodies:
        web/limits.py) on a socket bound beforehand."""
        runner, _ = await limits.listen(app, self.settings, None, 0, context, sock=sock)
        self.runners.append(runner)

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()
        if self.app is not None:
            await self.app.stop()

    def urls(self) -> dict[str, str]:
        return urls(self.settings)


async def serve_forever(
    server: Server, banner: str = "", stop_on: tuple[signal.Signals, ...] = ()
) -> None:
    """Start, print the banner (if any), serve until cancelled or one of `stop_on` arrives."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in stop_on:
        loop.add_signal_handler(signum, stopped.set)
    await server.start()
    try:
        if banner:
            print(banner.format(**server.urls(), sep2_port=server.sep2_port), flush=True)
        await stopped.wait()
    finally:
        for signum in stop_on:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await server.stop()
