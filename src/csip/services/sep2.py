"""The 2030.5 use cases: who is calling, what they may read, registration and device writes.

Reads go through the render cache: the first poll after a change renders and stores bytes,
every later poll is a dict lookup with no XML work and no query. Each write is one unit of
work that records what changed (domain/changes.py); services/changes.py turns that into the
tags that drop the affected bytes in every worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from lxml import etree

from csip.config import DEFAULT_POLL_RATES, Settings
from csip.domain.changes import (
    CertificateChanged,
    DeviceDocumentChanged,
    DeviceRef,
    EndDeviceChanged,
    EndDeviceListed,
    MembershipChanged,
    SubscriptionsChanged,
)
from csip.domain.clock import Clock
from csip.domain.devices import (
    ClientCertificate,
    EndDevice,
    Principal,
    PrincipalKind,
    may_access,
    principal_for,
)
from csip.domain.paging import Page
from csip.domain.timeinfo import time_info
from csip.errors import Conflict, Forbidden, InvalidValues, NotFound
from csip.pki.identity import normalize_lfdi, sfdi_from_lfdi
from csip.sep2 import resources as render
from csip.sep2.schema import SchemaSet
from csip.sep2.xml import parse, serialize, text
from csip.services import changes as tag
from csip.services.bus import EVERYTHING
from csip.services.cache import Entry, RenderCache
from csip.services.changes import Changes
from csip.store import Store
from csip.store import der as der_store
from csip.store import store as end_devices
from csip.store.outbox import enqueue

#: Documents a device PUTs under its EndDevice: path segment -> root element.
DOCUMENTS = {"di": "DeviceInformation", "dstat": "DeviceStatus", "ps": "PowerStatus"}
SETTINGS_TAG = tag.SETTINGS


def _nothing() -> None:
    return None


def device_ref(device: EndDevice) -> DeviceRef:
    return DeviceRef(device.id, device.lfdi, device.aggregator_id)


class Sep2Service:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        schemas: SchemaSet,
        changes: Changes,
        *,
        mup_count: Callable[[Principal], Awaitable[int]] | None = None,
        farewells: Callable[[int], Awaitable[list[Any]]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.schemas = schemas
        self.bus = changes.bus
        self.cache = RenderCache(
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            now=clock.now,
        )
        self._certs: dict[str, ClientCertificate | None] = {}
        #: Principals that passed every check and cannot expire: the per-poll fast path.
        self._ready: dict[str, Principal] = {}
        #: Aggregator certificates whose own EndDevice is known to exist.
        self._own_known: set[str] = set()
        self._poll_rates: dict[str, int] | None = None
        self._post_rate: int | None = None
        #: How many MirrorUsagePoints a client sees, for /dcap's MirrorUsagePointListLink.
        self.mup_count = mup_count
        #: The farewell notifications of a device's subscriptions, queued when it is deleted.
        self.farewells = farewells
        #: The app's one Changes: every write of every service built on this one goes through
        #: its units of work (it wakes the outbox after a commit that queued notifications).
        self.changes = changes
        self.bus.subscribe(self._on_invalidate)

    # ---- invalidation ----------------------------------------------------------
    def _on_invalidate(self, tags: list[str]) -> None:
        if EVERYTHING in tags:
            self.cache.clear()
            self._certs.clear()
            self._ready.clear()
            self._own_known.clear()
            self._poll_rates = None
            return
        for name in tags:
            if name.startswith("cert:"):
                self._certs.pop(name[5:], None)
                self._ready.pop(name[5:], None)
                self._own_known.discard(name[5:])
            elif name == SETTINGS_TAG:
                self._poll_rates = None
        self.cache.invalidate(tags)

    async def publish(self, tags: Iterable[str]) -> None:
        """Drop these tags in this worker only (what is process-local, such as a moved
        clock); a change to data records a typed change in its unit of work instead."""
        self.bus.deliver(list(tags))

    # ---- identity --------------------------------------------------------------
    @property
    def ready(self) -> Mapping[str, Principal]:
        """lfdi -> the principal of a certificate already admitted (read-only: the web
        layer's fast lane looks there on every poll; it is cleared or pruned, never
        replaced, when anything that decides a principal changes)."""
        return self._ready

    def ready_principal(self, lfdi: str) -> Principal | None:
        """The principal of a certificate already admitted, if nothing has changed since."""
        return self._ready.get(lfdi)

    def admit(self, principal: Principal) -> None:
        """Remember a principal that passed every check, unless its attachment can expire."""
        cert = self._certs.get(principal.lfdi)
        if cert is None or cert.expires_at is None:
            self._ready[principal.lfdi] = principal

    async def principal(self, lfdi: str, sfdi: int) -> Principal:
        """Classify the certificate: one dict lookup once its record has been read."""
        if lfdi in self._certs:
            cert = self._certs[lfdi]
        else:
            cert = await self.store.get_certificate(lfdi)
            self._certs[lfdi] = cert
        principal = principal_for(lfdi, sfdi, cert, self.clock.now_int())
        if principal.kind is PrincipalKind.AGGREGATOR and not principal.disabled:
            await self._own_end_device(principal)
        return principal

    async def _own_end_device(self, principal: Principal) -> None:
        """The CSIP-AUS aggregator model: an aggregator's certificate has its own EndDevice
        (lFDI and sFDI of the certificate), first in its EndDeviceList, under which it holds
        its subscriptions for every device it manages. Made on its first request."""
        if principal.lfdi in self._own_known:
            return
        if await self.store.get_end_device_by_lfdi(principal.lfdi) is None:
            now = self.clock.now_int()
            own = EndDevice(
                id=0,
                lfdi=principal.lfdi,
                sfdi=principal.sfdi,
                changed_time=now,
                registered_at=now,
                pin=self.settings.default_pin,
                aggregator_id=principal.aggregator_id,
                aggregator_self=True,
            )
            try:
                async with self.changes.unit_of_work() as tx:
                    found = await end_devices.select_end_device_by_lfdi(tx.session, own.lfdi)
                    if found is None:
                        (created,) = await end_devices.insert_end_devices(tx.session, [own])
                        ref = device_ref(created)
                        tx.record(EndDeviceChanged(ref), EndDeviceListed(ref))
            except Conflict:
                pass  # another worker made it meanwhile
        self._own_known.add(principal.lfdi)

    # ---- settings --------------------------------------------------------------
    async def poll_rates(self) -> dict[str, int]:
        rates = self._poll_rates
        if rates is None:
            # read both before publishing either: an invalidation may arrive during an await
            stored = await self.store.get_settings("poll_rate.")
            post_rate = await self.store.get_setting("post_rate")
            rates = {**DEFAULT_POLL_RATES, **stored}
            self._poll_rates, self._post_rate = rates, post_rate
        return rates

    async def default_post_rate(self) -> int | None:
        await self.poll_rates()
        return self._post_rate

    # ---- reads -----------------------------------------------------------------
    def _scope(self, principal: Principal) -> dict[str, Any]:
        if principal.kind is PrincipalKind.AGGREGATOR:
            return {"aggregator_id": principal.aggregator_id, "lfdi": principal.lfdi}
        return {"lfdi": principal.lfdi}

    async def device_capability(self, principal: Principal) -> bytes:
        entry = self.cache.get(("dcap", principal.scope))
        if entry is not None:
            return entry.body

        async def load() -> Entry:
            total, _ = await self.store.page_end_devices(**self._scope(principal), limit=0)
            rates = await self.poll_rates()
            mups = await self.mup_count(principal) if self.mup_count else None
            body = render.device_capability(rates["DeviceCapability"], total, mups)
            tags = (SETTINGS_TAG, tag.edev_list(principal.scope), tag.mup_list(principal.scope))
            return Entry(body, tags=tags)

        entry = await self.cache.fetch(("dcap", principal.scope), load)
        return entry.body

    async def time(self) -> bytes:
        """Built per request: currentTime changes every second and the body is tiny."""
        rates = await self.poll_rates()
        info = time_info(
            self.settings.timezone, self.clock.now_int(), coordinated=self.clock.offset == 0
        )
        return render.time_resource(info, rates["Time"])

    async def end_device_list(self, principal: Principal, page: Page) -> bytes:
        key = ("edevs", principal.scope, page.key())
        entry = self.cache.get(key)
        if entry is not None:
            return entry.body

        async def load() -> Entry:
            total, devices = await self.store.page_end_devices(
                **self._scope(principal), start=page.start, limit=page.limit
            )
            rates = await self.poll_rates()
            devices = [await self._with_post_rate(d) for d in devices]
            self._prime_devices(devices)
            body = render.end_device_list(
                total, devices, rates["EndDeviceList"], self.settings.profile
            )
            tags = (SETTINGS_TAG, tag.edev_list(principal.scope))
            return Entry(body, tags=tags, keep=page.kept(total))

        return (await self.cache.fetch(key, load)).body

    def _prime_devices(self, devices: list[EndDevice]) -> None:
        """An aggregator walks a page, then each device on it: cache the EndDevices the page
        just read, so the walk's next requests cost no query (first poll after a restart)."""
        generation = self.cache.generation
        for device in devices:
            key = ("edev", device.id, "")
            if key not in self.cache.entries:
                body = render.end_device(device, self.settings.profile)
                entry = Entry(body, device, (tag.edev(device.id), SETTINGS_TAG))
                self.cache.put(key, entry, generation)

    async def _with_post_rate(self, device: EndDevice) -> EndDevice:
        if device.post_rate is not None:
            return device
        default = await self.default_post_rate()
        if default is None:
            return device
        return dataclasses.replace(device, post_rate=default)

    async def _device_entry(self, device_id: int, part: str) -> Entry:
        """The cached rendering of one resource under /edev/{id}; owner is the EndDevice.

        An unknown id is answered from the database every time and never cached, so
        probing ids cannot grow the cache.
        """
        key = ("edev", device_id, part)
        entry = self.cache.get(key)
        if entry is not None:
            return entry
        generation = self.cache.generation
        tags = (tag.edev(device_id), SETTINGS_TAG)
        known = self.cache.get(("edev", device_id, "")) if part else None
        device = known.owner if known is not None else await self.store.get_end_device(device_id)
        if device is None:
            return Entry(b"", None, tags)
        rates = await self.poll_rates()
        body: bytes | None
        if part == "":
            body = render.end_device(await self._with_post_rate(device), self.settings.profile)
        elif part == "rg":
            body = render.registration(device, rates["EndDeviceList"])
        else:
            body = await self.store.get_document(device_id, part)
        entry = Entry(body or b"", device, tags)
        self.cache.put(key, entry, generation)
        return entry

    async def device_resource(self, principal: Principal, device_id: int, part: str) -> bytes:
        """GET /edev/{id}[/part]. Another client's device answers 404: ids must not leak."""
        entry = await self._device_entry(device_id, part)
        if entry.owner is None or not may_access(principal, entry.owner) or not entry.body:
            raise NotFound(f"no such resource under /edev/{device_id}")
        return entry.body

    async def accessible_device(self, principal: Principal, device_id: int) -> EndDevice:
        """The EndDevice if this client may reach it; 404 otherwise (ids must not leak)."""
        entry = await self._device_entry(device_id, "")
        device = entry.owner
        if not isinstance(device, EndDevice) or not may_access(principal, device):
            raise NotFound(f"no such EndDevice /edev/{device_id}")
        return device

    # ---- writes ----------------------------------------------------------------
    def parse_body(self, body: bytes, expected: str) -> etree._Element:
        """Size-capped, DTD-free, schema-validated parse of one document of this profile."""
        return parse(body, self.schemas.validator, expected, self.settings.max_body_bytes)

    async def register(self, principal: Principal, body: bytes) -> EndDevice:
        """POST /edev (CSIP IG §5.2): a device registers itself; an aggregator its devices."""
        root = self.parse_body(body, "EndDevice")
        raw_lfdi = text(root, "lFDI")
        sfdi = int(text(root, "sFDI") or "0")
        if principal.kind is PrincipalKind.AGGREGATOR:
            if raw_lfdi is None:
                raise InvalidValues(
                    "an aggregator must give the lFDI of the EndDevice it registers"
                )
            lfdi = normalize_lfdi(raw_lfdi)
            if sfdi != sfdi_from_lfdi(lfdi):
                raise InvalidValues(f"sFDI {sfdi} does not belong to lFDI {lfdi}")
            owner = principal.aggregator_id
        else:
            lfdi = normalize_lfdi(raw_lfdi) if raw_lfdi is not None else principal.lfdi
            if lfdi != principal.lfdi or sfdi != principal.sfdi:
                raise Forbidden("a device may register only its own certificate's lFDI and sFDI")
            owner = None
        now = self.clock.now_int()
        async with self.changes.unit_of_work() as tx:
            existing = await end_devices.select_end_device_by_lfdi(tx.session, lfdi)
            if existing is not None:
                href = existing.href if may_access(principal, existing) else None
                raise Conflict(f"lFDI {lfdi} is already registered", location=href)
            if not self.settings.registration_in_band:
                raise Forbidden(
                    "in-band registration is disabled: the utility pre-registers devices"
                )
            (device,) = await end_devices.insert_end_devices(
                tx.session,
                [
                    EndDevice(
                        id=0,
                        lfdi=lfdi,
                        sfdi=sfdi,
                        changed_time=int(text(root, "changedTime") or now),
                        registered_at=now,
                        pin=self.settings.default_pin,
                        enabled=(text(root, "enabled") or "true") in ("true", "1"),
                        device_category=text(root, "deviceCategory"),
                        aggregator_id=owner,
                        in_band=True,
                    )
                ],
            )
            ref = device_ref(device)
            tx.record(EndDeviceChanged(ref), EndDeviceListed(ref))
        return device

    async def update_end_device(self, principal: Principal, device_id: int, body: bytes) -> None:
        """PUT /edev/{id}: the device may change changedTime, enabled and deviceCategory."""
        device = await self.accessible_device(principal, device_id)
        root = self.parse_body(body, "EndDevice")
        raw_lfdi = text(root, "lFDI")
        if int(text(root, "sFDI") or "0") != device.sfdi or (
            raw_lfdi is not None and normalize_lfdi(raw_lfdi) != device.lfdi
        ):
            raise InvalidValues("lFDI and sFDI of an EndDevice cannot change")
        async with self.changes.unit_of_work() as tx:
            updated = await end_devices.update_end_device(
                tx.session,
                device_id,
                changed_time=int(text(root, "changedTime") or device.changed_time),
                enabled=(text(root, "enabled") or "true") in ("true", "1"),
                device_category=text(root, "deviceCategory"),
            )
            tx.record(EndDeviceChanged(device_ref(updated)))

    async def delete_end_device(self, principal: Principal, device_id: int) -> None:
        device = await self.accessible_device(principal, device_id)
        await self.remove_device(device)

    async def remove_device(self, device: EndDevice) -> None:
        """Delete a device with everything under it; its subscribers hear it is gone."""
        farewells = await self.farewells(device.id) if self.farewells is not None else []
        async with self.changes.unit_of_work() as tx:
            await enqueue(tx.session, farewells, self.clock.now())
            memberships = await der_store.select_memberships(tx.session, [device.id])
            await end_devices.delete_end_device(tx.session, device.id)  # memberships cascade
            ref = device_ref(device)
            tx.record(EndDeviceChanged(ref), EndDeviceListed(ref), SubscriptionsChanged(device.id))
            if device.aggregator_self:  # made again on the aggregator's next request
                tx.record(CertificateChanged(device.lfdi))
            # the groups it left may no longer share devices (potentiallySuperseded)
            tx.record(*(MembershipChanged(g, (ref,)) for g in memberships.get(device.id, ())))

    async def put_document(
        self, principal: Principal, device_id: int, part: str, body: bytes
    ) -> str | None:
        """PUT DeviceInformation / DeviceStatus / PowerStatus under the device's EndDevice;
        the href when the PUT created the document (201 + Location), else None."""
        device = await self.accessible_device(principal, device_id)
        root = self.parse_body(body, DOCUMENTS[part])
        doc_lfdi = text(root, "lFDI")
        if doc_lfdi is not None and normalize_lfdi(doc_lfdi) != device.lfdi:
            raise InvalidValues(f"lFDI {doc_lfdi} is not this EndDevice's lFDI")
        href = f"{device.href}/{part}"
        root.set("href", href)
        async with self.changes.unit_of_work() as tx:
            now = self.clock.now_int()
            created = await end_devices.update_document(
                tx.session, device_id, part, serialize(root), now
            )
            tx.record(DeviceDocumentChanged(device_id))
        return href if created else None
