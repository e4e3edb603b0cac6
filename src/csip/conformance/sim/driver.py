"""The asyncio driver of simulated OEM devices: does the I/O the sans-IO core asks for, with
the shared 2030.5 client (``csip.sep2.client``), over real mutual TLS.

A device's life (CSIP IG §5-6): /dcap, /tm (its clock follows the server's), find or
register its EndDevice, PUT its DERCapability and DERSettings, create its MirrorUsagePoint;
then, until stopped: walk FSA -> DERProgramList -> DERControlList/DefaultDERControl/curves at
the pollRate, hand what it read to the core, send the Responses the core decides, post
readings and DERStatus at the postRate. A subscribing device also subscribes to each
DERControlList and takes notifications on its own HTTPS (or, in labs, HTTP) receiver.

An aggregator gateway is one client (one aggregator certificate, one connection pool)
driving many EndDevices, each with its own core.

All waits are divided by ``speedup`` (wall time) so a benchmark can compress the CSIP poll
and post rates; the devices' own clock stays the server's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from lxml import etree

from csip.conformance.sim import documents
from csip.conformance.sim.core import DeviceCore, OemProfile, Quantity
from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi
from csip.sep2.client import MirrorReading, ProgramView, Sep2Client, Sep2Error, mrid_for
from csip.sep2.xml import PARSER, E, tag
from csip.web.tls import client_context

log = logging.getLogger(__name__)

DEFAULT_POLL_RATE = 300
DEFAULT_POST_RATE = 300
#: What went wrong, by kind, across every device of this process (for summaries).
ERROR_KINDS: collections.Counter[str] = collections.Counter()
#: Seconds a fleet waits past its duration for devices finishing an exchange.
GRACE = 5.0
#: Longest sleep between two looks at the clock (seconds): a safety net, since event
#: boundaries, posts, walks and notifications each wake the device on their own.
TICK = 60.0


@dataclass
class Stats:
    """What a device (or a fleet, summed) did."""

    walks: int = 0
    requests: int = 0
    responses: int = 0
    readings: int = 0
    notifications: int = 0
    errors: int = 0
    not_found: int = 0
    registered: int = 0

    def add(self, other: Stats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class DeviceConfig:
    """One simulated device: what `run_device` needs (one lab.toml entry maps onto it)."""

    server: str
    ca: Path
    #: the device's certificate chain, or its combined PEM (chain + key)
    cert: Path
    key: Path | None = None
    profile: OemProfile = field(default_factory=OemProfile)
    name: str = ""
    #: the EndDevice's LFDI; default: the certificate's (an aggregator's devices have their own)
    lfdi: str | None = None
    speedup: float = 1.0
    validator: etree.XMLSchema | None = None
    pen: int = 0
    #: notification receiver of a subscribing device: host, and TLS files (None = plain HTTP)
    notify_host: str = "127.0.0.1"
    notify_cert: Path | None = None
    notify_key: Path | None = None


def cert_lfdi(cert: Path) -> str:
    """The LFDI of the first certificate of a PEM file (the leaf)."""
    text = cert.read_text()
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return lfdi_from_cert_der(ssl.PEM_cert_to_DER_cert(text[begin:end]))


def managed_lfdi(aggregator_lfdi: str, index: int) -> str:
    """The LFDI of an aggregator's index-th EndDevice (stable across runs)."""
    return hashlib.sha256(f"{aggregator_lfdi}/{index}".encode()).hexdigest()[:40].upper()


class NotificationReceiver:
    """One HTTP(S) server on loopback taking 2030.5 Notifications for many devices:
    POST /notify/<device> -> that device's callback."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[etree._Element], None]] = {}
        self.base = ""
        self._runner: web.AppRunner | None = None

    def register(self, key: str, callback: Callable[[etree._Element], None]) -> str:
        self.callbacks[key] = callback
        return f"{self.base}/notify/{key}"

    async def _notify(self, request: web.Request) -> web.Response:
        callback = self.callbacks.get(request.match_info["key"])
        if callback is None:
            return web.Response(status=404)
        body = await request.content.read(1_048_577)
        if len(body) > 1_048_576 or b"<!DOCTYPE" in body.upper():
            return web.Response(status=400)
        try:
            callback(etree.fromstring(body, PARSER))
        except etree.XMLSyntaxError:
            return web.Response(status=400)
        return web.Response(status=204)

    async def start(
        self, host: str, ca: Path | None, cert: Path | None, key: Path | None, port: int = 0
    ) -> str:
        app = web.Application(client_max_size=1_048_576)
        app.router.add_post("/notify/{key}", self._notify)
        context: ssl.SSLContext | None = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert), str(key) if key else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if ca is not None:  # the server notifies with its own certificate: check it
                context.load_verify_locations(cafile=str(ca))
                context.verify_mode = ssl.CERT_REQUIRED
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        bound = self._runner.addresses[0][1]
        scheme = "https" if context is not None else "http"
        self.base = f"{scheme}://{host}:{bound}"
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class SimDevice:
    """One simulated EndDevice driven over a (possibly shared) client."""

    def __init__(
        self,
        config: DeviceConfig,
        client: Sep2Client,
        *,
        lfdi: str,
        edev_href: str | None = None,
        receiver: NotificationReceiver | None = None,
        gateway: tuple[dict[str, str], float] | None = None,
    ) -> None:
        self.config = config
        #: an aggregator gateway's /dcap links and clock offset, read once for all its devices
        self.gateway = gateway
        self.profile = config.profile
        self.client = client
        self.lfdi = lfdi
        self.sfdi = sfdi_from_lfdi(lfdi)
        self.name = config.name or lfdi[:8]
        self.edev_href = edev_href
        self.receiver = receiver
        self.stats = Stats()
        self.offset = 0.0  # server time - local time
        self.core: DeviceCore | None = None
        self.fsa_href: str | None = None
        self.mup_href: str | None = None
        self.der_links: dict[str, str] = {}
        self.sub_href: str | None = None
        self.time_href: str | None = None
        self.next_time_sync = 0.0
        self.subscribed: dict[str, ProgramView] = {}
        self.programs: dict[str, ProgramView] = {}
        self.server_poll_rate = DEFAULT_POLL_RATE
        self.server_post_rate = DEFAULT_POST_RATE
        self.next_walk = 0.0
        self.rediscover = True
        self.wake = asyncio.Event()
        self.log: list[tuple[float, str]] = []

    # ---- time ------------------------------------------------------------------------------
    def now(self) -> int:
        return int(time.time() + self.offset)

    def _wall(self, seconds: float) -> float:
        return seconds / max(self.config.speedup, 1e-6)

    @property
    def poll_interval(self) -> float:
        rate = self.profile.poll_rate or self.server_poll_rate
        if self.profile.subscribe and self.subscribed:
            rate *= self.profile.subscribed_poll_factor
        return self._wall(rate)

    # ---- discovery -------------------------------------------------------------------------
    async def discover(self) -> None:
        if self.gateway is not None:
            links, self.offset = self.gateway
            self.gateway = None  # a later rediscovery reads them itself
        else:
            links = await self.client.dcap()
            if "TimeLink" in links:
                self.offset = await self.client.time(links["TimeLink"]) - time.time()
        self.time_href = links.get("TimeLink")
        self.next_time_sync = asyncio.get_running_loop().time() + self._wall(
            900 if self.profile.time_sync is None else self.profile.time_sync
        )
        if self.edev_href is None:
            self.edev_href = await self.client.find_or_register(
                self.lfdi, self.sfdi, href=links.get("EndDeviceListLink", "/edev")
            )
            self.stats.registered += 1
        edev = await self.client.end_device_links(self.edev_href)
        self.fsa_href = edev.get("FunctionSetAssignmentsListLink")
        self.sub_href = edev.get("SubscriptionListLink")
        if self.core is None:
            self.core = DeviceCore(self.lfdi, self.profile, self.now())
        if self.profile.announces:
            await self._put_der_documents(edev.get("DERListLink"))
        mup_list = links.get("MirrorUsagePointListLink")
        if mup_list is not None and self.mup_href is None and self.profile.announces:
            await self._create_mup(mup_list)
        self.rediscover = False

    async def _put_der_documents(self, der_list: str | None) -> None:
        if der_list is None:
            return
        _, ders = await self.client.get_list(der_list, "DER")
        if not ders:
            return
        self.der_links = {
            etree.QName(c).localname: c.get("href", "") for c in ders[0] if c.get("href")
        }
        p = self.profile
        kw = round(p.rated_w)
        battery = p.kind == "battery"
        storage = (  # a battery says how much it holds and how fast it charges and discharges
            [
                E.rtgMaxChargeRateW(E.multiplier("0"), E.value(str(kw))),
                E.rtgMaxDischargeRateW(E.multiplier("0"), E.value(str(kw))),
            ]
            if battery
            else []
        )
        capacity = [E.rtgMaxWh(E.multiplier("0"), E.value(str(round(p.capacity_wh))))]
        capability = E.DERCapability(
            E.modesSupported("00500040" if battery else "00300041"),
            *storage,
            E.rtgMaxVA(E.multiplier("0"), E.value(str(kw))),
            E.rtgMaxVar(E.multiplier("0"), E.value(str(round(p.rated_var)))),
            E.rtgMaxW(E.multiplier("0"), E.value(str(kw))),
            *(capacity if battery else []),
            E.type("83" if battery else "4"),
        )
        settings = E.DERSettings(
            E.modesEnabled("00500040" if battery else "00300041"),
            E.setGradW("1000"),
            E.setMaxW(E.multiplier("0"), E.value(str(kw))),
            E.updatedTime(str(self.now())),
        )
        documents_to_put = [("DERCapabilityLink", capability), ("DERSettingsLink", settings)]
        if battery:  # the owner's backup reserve, which the battery never discharges below
            availability = E.DERAvailability(
                E.readingTime(str(self.now())),
                E.reservePercent(str(round(p.reserve_pct * 100))),
            )
            documents_to_put.append(("DERAvailabilityLink", availability))
        for link, document in documents_to_put:
            href = self.der_links.get(link)
            if href:
                await self._checked(self.client.put_document(href, document))

    async def _create_mup(self, mup_list: str) -> None:
        assert self.core is not None
        lfdi = self.profile.faults.foreign_lfdi or self.lfdi
        quantities = self.core.quantities(self.now())
        mrid = mrid_for(self.lfdi, "mup", pen=self.config.pen)
        try:
            self.mup_href = await self.client.create_mirror_usage_point(
                lfdi=lfdi,
                mrid=mrid,
                description=f"{self.profile.name} {self.name}",
                readings=[_reading(q) for q in quantities],
                pen=self.config.pen,
                href=mup_list,
            )
        except Sep2Error as exc:
            if exc.status == 404:
                raise
            # refused (say, another device's LFDI): the device goes on without readings
            self._error(f"HTTP {exc.status} creating its MirrorUsagePoint")
            return
        mup = await self.client.get_xml(self.mup_href)
        rate = mup.findtext(tag("postRate"))
        if rate:
            self.server_post_rate = int(rate)

    async def _checked(self, pending: Awaitable[object]) -> None:
        reply = await pending
        status = getattr(reply, "status", 200)
        if status >= 400:
            self._error(f"HTTP {status} on a PUT")

    def _error(self, kind: str) -> None:
        self.stats.errors += 1
        ERROR_KINDS[kind] += 1

    # ---- the walk --------------------------------------------------------------------------
    async def walk(self) -> None:
        assert self.core is not None
        if self.fsa_href is None:  # an EndDevice without FSAs: nothing to walk yet
            self.stats.walks += 1
            return
        loop_time = asyncio.get_running_loop().time()
        if self.time_href is not None and loop_time >= self.next_time_sync:
            # its clock follows the server's (a lab may move it)
            self.offset = await self.client.time(self.time_href) - time.time()
            sync = self.profile.time_sync
            self.next_time_sync = loop_time + self._wall(900 if sync is None else sync)
        # until it reads them, it did what it knew: the physics catch up before new documents
        self.core.advance(self.now())
        views = await self.client.programs(self.fsa_href)
        self.stats.walks += 1
        for view in views:
            self._take(view)
            if view.poll_rate:
                self.server_poll_rate = view.poll_rate
        self.core.forget_programs(view.href for view in views)
        self.programs = {view.href: view for view in views}
        if self.profile.subscribe:
            await self._subscribe(views)

    def _take(self, view: ProgramView) -> None:
        assert self.core is not None
        controls = [documents.control_doc(c, view.href, view.primacy) for c in view.controls]
        default = (
            documents.default_doc(view.default, view.href, view.primacy)
            if view.default is not None
            else None
        )
        self.core.update_program(
            view.href, controls, default, documents.curves_of(view.curves), now=self.now()
        )

    async def _subscribe(self, views: Sequence[ProgramView]) -> None:
        if self.receiver is None or self.sub_href is None:
            return
        for view in views:
            derc = _link(view.program, "DERControlListLink")
            if derc is None or derc in self.subscribed:
                continue
            uri = self.receiver.register(f"{self.name}", self.on_notification)
            try:
                await self.client.subscribe(self.sub_href, resource=derc, uri=uri)
                self.subscribed[derc] = view
            except Sep2Error as exc:
                self._error(f"subscribing: HTTP {exc.status}")
                log.warning("%s: subscribing to %s failed: %s", self.name, derc, exc)

    def on_notification(self, notification: etree._Element) -> None:
        """A Notification of a DERControlList: take its controls at once, wake the loop."""
        self.stats.notifications += 1
        resource = notification.findtext(tag("subscribedResource")) or ""
        view = self.subscribed.get(resource)
        body = notification.find(tag("Resource"))
        if view is None or body is None or self.core is None:
            return
        controls = documents.controls_of(body, view.href, view.primacy)
        self.core.advance(self.now())
        self.core.update_controls(controls, now=self.now())
        self.wake.set()

    # ---- acting ----------------------------------------------------------------------------
    async def act(self) -> None:
        assert self.core is not None
        now = self.now()
        for response in self.core.step(now):
            reply = await self.client.post_response(
                response.reply_to,
                subject=response.subject,
                lfdi=response.lfdi,
                status=response.status,
                created=response.created,
            )
            self.stats.responses += 1
            self.log.append((time.time(), f"response {response.status} {response.subject}"))
            if reply.status >= 400:
                self._error(f"HTTP {reply.status} on a Response")
        post_rate = max(1, round(self._wall(self.server_post_rate)))
        quantities = self.core.telemetry_due(now, post_rate)
        if quantities is not None and self.mup_href is not None:
            start, interval = self.core.window
            reply = await self.client.post_readings(
                self.mup_href,
                mrid=mrid_for(self.lfdi, "mup", pen=self.config.pen),
                readings=[_reading(q) for q in quantities],
                start=start,
                duration=interval,
                pen=self.config.pen,
            )
            self.stats.readings += 1
            if reply.status >= 400:
                self._error(f"HTTP {reply.status} on readings")
            await self._put_status(now)

    async def _put_status(self, now: int) -> None:
        assert self.core is not None
        href = self.der_links.get("DERStatusLink")
        if not href:
            return
        children = [E.readingTime(str(now))]
        if self.profile.kind == "battery":
            soc = round(self.core.soc_pct * 100)
            children.append(
                E.stateOfChargeStatus(E.dateTime(str(now)), E.value(str(soc))),
            )
        await self._checked(self.client.put_document(href, E.DERStatus(*children)))

    # ---- the loop --------------------------------------------------------------------------
    async def run(
        self, duration: float | None = None, stop: asyncio.Event | None = None, delay: float = 0.0
    ) -> Stats:
        """Live until `duration` wall seconds pass or `stop` is set (after waiting `delay`,
        so that a fleet does not start in one burst); return what it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration if duration is not None else float("inf")
        backoff = 1.0
        await self._sleep(min(delay, deadline - loop.time()), stop)
        while loop.time() < deadline and not (stop is not None and stop.is_set()):
            try:
                if self.rediscover:
                    await self.discover()
                    self.next_walk = 0.0
                if loop.time() >= self.next_walk:
                    await self.walk()
                    self.next_walk = loop.time() + self.poll_interval
                await self.act()
                backoff = 1.0
            except Sep2Error as exc:
                self._error(f"HTTP {exc.status}" if exc.status else str(exc)[:80])
                if exc.status == 404:
                    self.stats.not_found += 1
                    if not self.profile.faults.polls_after_404:
                        # what it held is gone: start again from /dcap (may re-register)
                        self.rediscover = True
                        self.edev_href = None
                        self.mup_href = None
                    else:  # the fault: same hrefs again at its poll rate, no backing off
                        self.next_walk = loop.time() + self.poll_interval
                        await self._sleep(self._next_wait(loop.time(), deadline), stop)
                        continue
                log.debug("%s: %s", self.name, exc)
                await self._sleep(min(backoff, deadline - loop.time()), stop)
                backoff = min(backoff * 2, 60.0)
                continue
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                self._error(type(exc).__name__)
                log.debug("%s: %s", self.name, exc)
                await self._sleep(min(backoff, deadline - loop.time()), stop)
                backoff = min(backoff * 2, 60.0)
                continue
            await self._sleep(self._next_wait(loop.time(), deadline), stop)
        return self.stats

    def _next_wait(self, at: float, deadline: float) -> float:
        # the device's clock is the server's and runs at real speed: boundaries and posts
        # (whose interval already has the speedup) are real seconds away
        waits = [self.next_walk - at, TICK, deadline - at]
        if self.core is None:
            return max(0.01, min(waits))
        boundary = self.core.next_boundary(self.now())
        if boundary is not None:
            waits.append(boundary - (time.time() + self.offset) + 0.005)
        if self.core.next_post is not None:
            waits.append(self.core.next_post - (time.time() + self.offset) + 0.005)
        return max(0.01, min(waits))

    async def _sleep(self, seconds: float, stop: asyncio.Event | None) -> None:
        if seconds <= 0:
            return
        self.wake.clear()
        waiters = [asyncio.ensure_future(self.wake.wait())]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def _link(element: etree._Element, name: str) -> str | None:
    child = element.find(tag(name))
    return None if child is None else child.get("href")


def _reading(q: Quantity) -> MirrorReading:
    return MirrorReading(
        q.name, q.uom, q.value, q.multiplier, q.kind, q.phase, 2 if q.kind == 37 else None
    )


# ---- fleets --------------------------------------------------------------------------------
@dataclass
class Fleet:
    """Devices that share a process (and, behind one aggregator certificate, a client)."""

    devices: list[SimDevice]
    clients: list[Sep2Client]
    receiver: NotificationReceiver | None = None

    @property
    def stats(self) -> Stats:
        total = Stats()
        for device in self.devices:
            total.add(device.stats)
        total.requests = sum(client.requests for client in self.clients)
        return total

    async def run(
        self, duration: float | None = None, stop: asyncio.Event | None = None, ramp: float = 0.0
    ) -> Stats:
        """Run every device; their starts spread evenly over `ramp` seconds."""
        count = max(1, len(self.devices))
        tasks = [
            asyncio.create_task(d.run(duration, stop, ramp * i / count))
            for i, d in enumerate(self.devices)
        ]
        # a device stops at its next look at the clock; one stuck in a slow exchange past
        # its duration (plus a grace period) is cancelled
        limit = None if duration is None else duration + GRACE
        try:
            await asyncio.wait(tasks, timeout=limit)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for device, outcome in zip(self.devices, outcomes, strict=True):
                if isinstance(outcome, Exception):  # a bug, not the server's doing: say so
                    ERROR_KINDS[f"crashed: {type(outcome).__name__}"] += 1
                    log.error("%s stopped: %r", device.name, outcome)
            await self.close()
        return self.stats

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self.receiver is not None:
            await self.receiver.stop()


async def _receiver_for(configs: Sequence[DeviceConfig]) -> NotificationReceiver | None:
    subscribing = [c for c in configs if c.profile.subscribe]
    if not subscribing:
        return None
    first = subscribing[0]
    receiver = NotificationReceiver()
    await receiver.start(first.notify_host, first.ca, first.notify_cert, first.notify_key)
    return receiver


def _client(config: DeviceConfig, limit: int = 2) -> Sep2Client:
    context = client_context(ca_file=config.ca, cert_chain_file=config.cert, key_file=config.key)
    return Sep2Client(config.server, context, validator=config.validator, limit=limit)


async def device_fleet(configs: Sequence[DeviceConfig]) -> Fleet:
    """One client (one certificate) per device."""
    receiver = await _receiver_for(configs)
    devices: list[SimDevice] = []
    clients: list[Sep2Client] = []
    for config in configs:
        client = _client(config)
        clients.append(client)
        lfdi = config.lfdi or cert_lfdi(config.cert)
        devices.append(SimDevice(config, client, lfdi=lfdi, receiver=receiver))
    return Fleet(devices, clients, receiver)


async def aggregator_fleet(
    config: DeviceConfig,
    count: int,
    *,
    limit: int = 16,
    profiles: Sequence[OemProfile] = (),
) -> Fleet:
    """One aggregator certificate managing `count` EndDevices (registered in band when the
    aggregator's EndDeviceList lacks them), each with its own core and MirrorUsagePoint, and
    the profiles given in turn (default: the config's)."""
    receiver = await _receiver_for(
        [config, *(dataclasses.replace(config, profile=p) for p in profiles)]
    )
    client = _client(config, limit=limit)
    aggregator = cert_lfdi(config.cert)
    lfdis = [managed_lfdi(aggregator, i) for i in range(count)]
    try:
        dcap = await client.dcap()
        offset = 0.0
        if "TimeLink" in dcap:
            offset = await client.time(dcap["TimeLink"]) - time.time()
        edev_list = dcap.get("EndDeviceListLink", "/edev")
        existing = {
            (device.findtext(tag("lFDI")) or "").upper(): str(device.get("href"))
            for device in await client.end_devices(edev_list)
        }
        hrefs: list[str] = []
        for lfdi in lfdis:
            href = existing.get(lfdi)
            if href is None:
                href = await client.find_or_register(lfdi, sfdi_from_lfdi(lfdi), href=edev_list)
            hrefs.append(href)
    except BaseException:
        await client.close()
        if receiver is not None:
            await receiver.stop()
        raise
    devices = [
        SimDevice(
            dataclasses.replace(
                config,
                name=f"{config.name or 'agg'}-{i}",
                profile=profiles[i % len(profiles)] if profiles else config.profile,
            ),
            client,
            lfdi=lfdi,
            edev_href=href,
            receiver=receiver,
            gateway=(dcap, offset),
        )
        for i, (lfdi, href) in enumerate(zip(lfdis, hrefs, strict=True))
    ]
    return Fleet(devices, [client], receiver)


def run_device(config: DeviceConfig, duration: float | None = None) -> asyncio.Task[Stats]:
    """Start one simulated device (one lab.toml entry) as a task; cancel it to stop it.
    The task's result is what the device did."""

    async def life() -> Stats:
        fleet = await device_fleet([config])
        with contextlib.suppress(asyncio.CancelledError):
            await fleet.run(duration)
        return fleet.stats

    return asyncio.create_task(life(), name=f"sim:{config.name or config.cert.name}")
