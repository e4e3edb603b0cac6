"""The one place that wires csip: settings and a clock in, stores, services, senders and the
three faces (2030.5, admin, OpenADR 3 VTN) out, each given only what it uses.

`build()` constructs; `App.start()` / `App.stop()` run what has a lifetime (database schema,
invalidation bus, VTN keys, the outbox worker, the senders' connection pools). Listening is
the caller's (csip.web.server): it binds the sockets first and settles the ports in the
settings it passes here, so nothing needs wiring after construction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from csip.config import Settings
from csip.domain.clock import Clock
from csip.errors import ConfigError
from csip.metrics import SYNC_INTERVAL, Metrics
from csip.sep2 import schema
from csip.services.admin import AdminService
from csip.services.boundaries import BoundaryNotices
from csip.services.bus import LocalBus, PgBus, SqliteBus, asyncpg_dsn
from csip.services.changes import Changes
from csip.services.console import ConsoleService
from csip.services.der_device import DerDeviceService
from csip.services.dispatch import DispatchService, DispatchWatch
from csip.services.engine import EngineService
from csip.services.engine_reports import EngineReports
from csip.services.fleet import FleetService
from csip.services.messaging import MessagingService
from csip.services.operators import OperatorService
from csip.services.outbox import OutboxWorker, WebhookSender
from csip.services.programs import ProgramService
from csip.services.sep2 import Sep2Service
from csip.services.settlement import SettlementService
from csip.services.subscriptions import Sep2Notifier, SubscriptionService, cancellations
from csip.services.telemetry import TelemetryService, count_mirror_usage_points
from csip.services.vtn import VtnService
from csip.services.vtn_auth import VtnAuth
from csip.services.vtn_notify import MqttSender, SafeResolver
from csip.store import Store
from csip.store import outbox as store_outbox
from csip.store.subscriptions import SubscriptionStore
from csip.store.telemetry import TelemetryStore
from csip.web import admin_app, sep2_app, vtn_app
from csip.web.identity import IdentityResolver
from csip.web.lab import stamp_worker
from csip.web.observe import METRICS, REFRESH
from csip.web.tls import client_context


def public_host(settings: Settings) -> str:
    """The host name in URLs csip hands out: the test PKI names localhost, not 127.0.0.1."""
    return "localhost" if settings.host in ("127.0.0.1", "::1") else settings.host


def sep2_public_base(settings: Settings) -> str:
    """Absolute base of subscriptionURIs: configured, or this listener's https URL."""
    configured = settings.sep2_public_url.rstrip("/")
    return configured or f"https://{public_host(settings)}:{settings.sep2_port}"


@dataclass
class App:
    """Everything one csip process runs; the web applications are not listening yet."""

    settings: Settings
    clock: Clock
    store: Store
    bus: LocalBus
    changes: Changes
    outbox: OutboxWorker
    #: Tells DERControlList subscribers when controls start and end with no write.
    boundaries: BoundaryNotices
    webhooks: WebhookSender
    mqtt: MqttSender | None
    notifier: Sep2Notifier
    sep2: Sep2Service
    programs: ProgramService
    messaging: MessagingService
    subscriptions: SubscriptionService
    der_device: DerDeviceService
    telemetry: TelemetryService
    #: typed DER facts, fleet capacity and forecast (issue 12)
    fleet: FleetService
    admin: AdminService
    vtn_auth: VtnAuth
    vtn: VtnService
    engine: EngineService
    settlement: SettlementService
    #: The program engine's OpenADR reports on its events (time- and answer-driven).
    reports: EngineReports
    #: Per-device dispatch of battery programs (issue 12).
    dispatch: DispatchService
    #: Per-device dispatch kept true during events (answer- and time-driven), or None.
    dispatch_watch: DispatchWatch | None
    #: Console operators, sessions and the audit log (issue 13).
    operators: OperatorService
    #: What the console's pages show and change (issue 13).
    console: ConsoleService
    sep2_app: web.Application
    admin_app: web.Application
    vtn_app: web.Application
    #: CORE-002's plain-HTTP listener (http_redirect_port), or None.
    redirect_app: web.Application | None
    #: Prometheus metrics of this process, served at /metrics on the admin listener.
    metrics: Metrics
    _sync_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bring the schema up to date, then start what runs in the background."""
        if self.metrics.multiprocess:  # a worker: its counts reach the shared files often
            self._sync_task = asyncio.get_running_loop().create_task(
                _sync_metrics(self.metrics), name="metrics-sync"
            )
        await self.store.migrate()
        await self.bus.start()
        await self.vtn_auth.start()
        await self.outbox.start()
        await self.reports.start()
        if self.dispatch_watch is not None:
            await self.dispatch_watch.start()
        await self.boundaries.start()

    async def refresh_metrics(self) -> None:
        """Read the figures /metrics takes from the database (outbox depth and age)."""
        now = self.clock.now()
        backlog = await store_outbox.backlog(self.store)
        self.metrics.set_outbox(
            {kind: (n, max(0.0, now - oldest)) for kind, (n, oldest) in backlog.items()}
        )

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self.metrics.sync()
        await self.boundaries.stop()
        if self.dispatch_watch is not None:
            await self.dispatch_watch.stop()
        await self.reports.stop()
        await self.outbox.stop()
        for sender in (self.webhooks, self.mqtt, self.notifier):
            if sender is not None:
                await sender.close()
        await self.bus.stop()
        await self.store.close()


async def _sync_metrics(metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(SYNC_INTERVAL)
        metrics.sync()


def _bus(store: Store, settings: Settings) -> LocalBus:
    if store.dialect == "postgresql":
        return PgBus(asyncpg_dsn(settings.db_url))
    # its own engine, as PgBus has its own connection: the poll never queues behind requests
    return SqliteBus(Store(settings.db_url))


def build(settings: Settings, clock: Clock | None = None) -> App:
    """Wire one csip process. `settings` must hold the real ports (not 0) when the public
    URLs derive from them: csip.web.server binds first and passes the settled settings."""
    clock = clock or Clock()
    schemas = schema.load(settings.profile, settings.schema_dir)
    store = Store(settings.db_url)
    bus = _bus(store, settings)
    metrics = Metrics(settings.metrics_seen_window)

    # ---- outbox and its senders ----------------------------------------------------------
    outbox = OutboxWorker(
        store,
        clock,
        [float(d) for d in settings.outbox_retry_delays],
        settings.outbox_max_attempts,
        metrics=metrics,
    )
    resolver = SafeResolver(settings.vtn_webhook_allow_loopback)
    webhooks = WebhookSender(
        settings.vtn_webhook_timeout, resolver=resolver, url_guard=resolver.check_literal
    )
    outbox.register("webhook", webhooks)
    mqtt: MqttSender | None = None
    if settings.vtn_mqtt_url:
        try:
            mqtt = MqttSender(settings.vtn_mqtt_url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        outbox.register("mqtt", mqtt)

    # ---- what changes mean (one for every service that writes) ---------------------------
    changes = Changes(
        store,
        bus,
        clock,
        wake=outbox.wake,
        mqtt_prefix=settings.vtn_mqtt_topic_prefix if mqtt is not None else None,
    )

    boundaries = BoundaryNotices(store, changes, clock, bus)

    # ---- 2030.5 --------------------------------------------------------------------------
    public_base = sep2_public_base(settings)
    farewells: Callable[[int], Awaitable[list[Any]]] = partial(
        cancellations, SubscriptionStore(store), public_base
    )
    sep2 = Sep2Service(
        store,
        settings,
        clock,
        schemas,
        changes,
        mup_count=partial(count_mirror_usage_points, TelemetryStore(store)),
        farewells=farewells,
    )
    programs = ProgramService(sep2)
    messaging = MessagingService(programs)
    subscriptions = SubscriptionService(programs, public_base, messaging)
    der_device = DerDeviceService(sep2)
    telemetry = TelemetryService(sep2)
    ca, chain, key = settings.tls_files()
    notifier = Sep2Notifier(
        subscriptions,
        client_context(ca_file=ca, cert_chain_file=chain, key_file=key),
        resolver=None if settings.notification_allow_private else SafeResolver(False),
    )
    outbox.register("sep2", notifier)
    identity = IdentityResolver(settings.trusted_proxies, settings.forwarded_cert_header)
    sep2_face = sep2_app.create_app(
        sep2, identity, programs, subscriptions, der_device, telemetry, messaging, metrics
    )
    metrics.follow("cache_hits", lambda: sep2.cache.stats.hits, metrics.cache_hits)
    metrics.follow("cache_misses", lambda: sep2.cache.stats.misses, metrics.cache_misses)
    metrics.follow("cache_renders", lambda: sep2.cache.stats.renders, metrics.cache_renders)
    metrics.follow("fast_lane", lambda: sep2.cache.stats.fast_lane, metrics.fast_lane)

    # ---- OpenADR 3 VTN -------------------------------------------------------------------
    vtn_auth = VtnAuth(store, settings, clock, changes)
    dispatch = DispatchService(programs, metrics)
    engine = EngineService(programs, messaging, dispatch, metrics)
    settlement = SettlementService(programs)
    vtn = VtnService(store, settings, clock, changes, vtn_auth, engine=engine)
    vtn_face = vtn_app.create_app(vtn)
    fleet = FleetService(sep2)
    reports = EngineReports(changes, clock, fleet=fleet)
    dispatch_watch = (
        DispatchWatch(dispatch, debounce=settings.dispatch_debounce, tick=settings.dispatch_tick)
        if settings.dispatch_watch
        else None
    )

    # ---- admin ---------------------------------------------------------------------------
    admin = AdminService(sep2)
    operators = OperatorService(store, clock, changes)
    console = ConsoleService(
        programs, engine, vtn, vtn_auth, fleet, settlement, der_device, telemetry, operators
    )
    admin_face = admin_app.create_app(
        admin,
        programs,
        der_device,
        telemetry,
        vtn_auth,
        engine,
        vtn,
        settlement,
        messaging,
        fleet,
        console,
    )

    redirect_face = None
    if settings.http_redirect_port:
        redirect_face = sep2_app.create_redirect_app(settings.sep2_port)
    for face in (vtn_face, admin_face, redirect_face):
        if face is not None:
            face[METRICS] = metrics

    if settings.lab_worker_header:
        for face in (sep2_face, admin_face, vtn_face):
            stamp_worker(face)
    app = App(
        settings=settings,
        clock=clock,
        store=store,
        bus=bus,
        changes=changes,
        outbox=outbox,
        boundaries=boundaries,
        webhooks=webhooks,
        mqtt=mqtt,
        notifier=notifier,
        sep2=sep2,
        programs=programs,
        messaging=messaging,
        subscriptions=subscriptions,
        der_device=der_device,
        telemetry=telemetry,
        fleet=fleet,
        admin=admin,
        vtn_auth=vtn_auth,
        vtn=vtn,
        engine=engine,
        settlement=settlement,
        reports=reports,
        dispatch=dispatch,
        dispatch_watch=dispatch_watch,
        operators=operators,
        console=console,
        sep2_app=sep2_face,
        admin_app=admin_face,
        vtn_app=vtn_face,
        redirect_app=redirect_face,
        metrics=metrics,
    )
    admin_face[REFRESH] = app.refresh_metrics
    return app


async def prepare(settings: Settings) -> None:
    """What must happen once before several workers start on one database: the schema
    migration (concurrent Alembic runs would race) and the VTN signing key."""
    store = Store(settings.db_url)
    try:
        await store.migrate()
        with contextlib.suppress(Exception):  # the workers report key problems themselves
            clock = Clock()
            await VtnAuth(store, settings, clock, Changes(store, LocalBus(), clock)).start()
    finally:
        await store.close()
