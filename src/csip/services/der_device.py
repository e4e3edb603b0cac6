"""What devices post under their EndDevice: the DER (capability, settings, status,
availability), the CSIP-AUS ConnectionPoint and LogEvents; and reading them back.

Reads go through the Sep2Service render cache, keyed per device and tagged with the device
(`edev:{id}`, dropped when the EndDevice changes or goes) and with what a write here
changes (`der:{id}` for the DER documents, `lel:{id}` for the log), so a DERStatus PUT or
an alarm does not re-render the EndDevice, and a poll of an unchanged resource is two dict
lookups (the EndDevice for access control, then the resource).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from lxml import etree

from csip.domain.changes import DerDocumentChanged, LogEventAdded
from csip.domain.der_device import (
    DER_DOCUMENTS,
    DER_ID,
    LOG_EVENTS_KEPT,
    LogEvent,
    Quantity,
    missing_settings,
    nmi_problem,
    settings_problems,
)
from csip.domain.devices import EndDevice, Principal
from csip.domain.paging import Page
from csip.errors import BadRequest, InvalidValues, NotFound
from csip.sep2.schema import CSIPAUS_NS, SEP_NS
from csip.sep2.xml import PARSER, E, link, read_document, schema_error, serialize, text
from csip.services import changes as tag
from csip.services import fleet
from csip.services.cache import Entry
from csip.services.sep2 import SETTINGS_TAG, Sep2Service
from csip.store import store as db
from csip.store.der_device import DerDeviceStore, StoredDocument, insert_log_event

#: device_document kind of the CSIP-AUS ConnectionPoint.
CONNECTION_POINT = "cp"
#: Admin JSON names of the DER documents.
ADMIN_NAMES = {
    "dercap": "capability",
    "derg": "settings",
    "ders": "status",
    "dera": "availability",
}


der_tag = tag.der
log_tag = tag.log


def _local(element: etree._Element) -> str:
    name = etree.QName(element)
    return f"csipaus:{name.localname}" if name.namespace == CSIPAUS_NS else name.localname


def decode(element: etree._Element) -> dict[str, Any]:
    """An element's attributes and children as JSON: leaves keep their text exactly (a
    HexBinary stays "0a", a value keeps its multiplier beside it); repeats become lists."""
    out: dict[str, Any] = {str(k): str(v) for k, v in element.attrib.items()}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = _local(child)
        value: Any = decode(child) if len(child) or child.attrib else (child.text or "").strip()
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


def quantities(root: etree._Element) -> dict[str, Quantity]:
    """Children that are 2030.5 values with multipliers (ActivePower, ApparentPower ...)."""
    found: dict[str, Quantity] = {}
    for child in root:
        if not isinstance(child.tag, str) or etree.QName(child).namespace != SEP_NS:
            continue
        value, multiplier = text(child, "value"), text(child, "multiplier")
        if value is not None and multiplier is not None:
            found[etree.QName(child).localname] = Quantity(int(value), int(multiplier))
    return found


def document_json(document: StoredDocument) -> dict[str, Any]:
    root = etree.fromstring(document.xml, PARSER)
    fields = decode(root)
    return {"href": fields.pop("href", None), "updated_at": document.updated_at, "fields": fields}


# ---- rendering (once per change) ------------------------------------------------------
def render_der(device: EndDevice) -> etree._Element:
    base = f"{device.href}/der/{DER_ID}"
    # CurrentDERProgramLink appears only once a program is current (the program engine).
    element: etree._Element = E.DER(
        link("AssociatedDERProgramListLink", f"{base}/derp"),
        link("DERAvailabilityLink", f"{base}/dera"),
        link("DERCapabilityLink", f"{base}/dercap"),
        link("DERSettingsLink", f"{base}/derg"),
        link("DERStatusLink", f"{base}/ders"),
        href=base,
    )
    return element


def render_der_list(device: EndDevice, page: Page, poll_rate: int) -> bytes:
    ders = [render_der(device)][page.start : page.start + page.limit]
    element = E.DERList(
        *ders,
        href=f"{device.href}/der",
        all="1",
        results=str(len(ders)),
        pollRate=str(poll_rate),
    )
    return serialize(element)


def render_log_events(device: EndDevice, total: int, events: list[LogEvent]) -> bytes:
    element = E.LogEventList(
        *(etree.fromstring(e.xml, PARSER) for e in events),
        href=f"{device.href}/lel",
        all=str(total),
        results=str(len(events)),
    )
    return serialize(element)


class DerDeviceService:
    def __init__(self, sep2: Sep2Service) -> None:
        self.sep2 = sep2
        self.store = DerDeviceStore(sep2.store)

    @property
    def aus(self) -> bool:
        return self.sep2.settings.profile == "csip-aus"

    # ---- parsing --------------------------------------------------------------------
    def _read(self, body: bytes, namespace: str, expected: str) -> etree._Element:
        """The hardened parse (csip.sep2.xml), before the schema step: the completeness
        checks answer first, and ConnectionPoint lives in the CSIP-AUS namespace."""
        max_bytes = self.sep2.settings.max_body_bytes
        return read_document(body, (expected,), max_bytes, namespace)

    def _validate(self, root: etree._Element, expected: str) -> None:
        error = schema_error(self.sep2.schemas.validator, root)
        if error is not None:
            raise BadRequest(f"{expected} is not valid against the schema: {error}")

    # ---- cached reads ---------------------------------------------------------------
    async def _cached(
        self,
        key: Hashable,
        device: EndDevice,
        tags: tuple[str, ...],
        load: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        async def fill() -> Entry:
            return Entry(await load(), device, tags)

        entry = await self.sep2.cache.fetch(key, fill)
        if not entry.body:
            raise NotFound("no such resource (nothing posted yet)")
        return entry.body

    async def _cached_page(
        self,
        key: Hashable,
        device: EndDevice,
        page: Page,
        tags: tuple[str, ...],
        load: Callable[[], Awaitable[tuple[bytes, int]]],
    ) -> bytes:
        """A list page under the EndDevice: `load` gives the body and the list's size; a
        page past the end of its list is not kept (domain.paging.Page.kept)."""

        async def fill() -> Entry:
            body, total = await load()
            return Entry(body, device, tags, keep=page.kept(total))

        return (await self.sep2.cache.fetch(key, fill)).body

    @staticmethod
    def _check_der(der_id: int) -> None:
        if der_id != DER_ID:
            raise NotFound(f"no DER {der_id}: each EndDevice has DER {DER_ID}")

    async def der_list(self, principal: Principal, device_id: int, page: Page) -> bytes:
        device = await self.sep2.accessible_device(principal, device_id)

        async def load() -> tuple[bytes, int]:
            rates = await self.sep2.poll_rates()
            return render_der_list(device, page, rates["DERList"]), 1  # one DER per EndDevice

        tags = (tag.edev(device_id), SETTINGS_TAG)
        key = ("der", device_id, "list", page.key())
        return await self._cached_page(key, device, page, tags, load)

    async def der(self, principal: Principal, device_id: int, der_id: int) -> bytes:
        device = await self.sep2.accessible_device(principal, device_id)
        self._check_der(der_id)

        async def load() -> bytes:
            return serialize(render_der(device))

        tags = (tag.edev(device_id),)
        return await self._cached(("der", device_id, "der"), device, tags, load)

    def check_der(self, der_id: int) -> None:
        """Only DER 1 exists (one DER per EndDevice)."""
        self._check_der(der_id)

    async def _document(self, principal: Principal, device_id: int, kind: str) -> bytes:
        device = await self.sep2.accessible_device(principal, device_id)

        async def load() -> bytes:
            return await self.sep2.store.get_document(device_id, kind) or b""

        tags = (tag.edev(device_id), der_tag(device_id))
        return await self._cached(("der", device_id, "doc", kind), device, tags, load)

    async def der_document(
        self, principal: Principal, device_id: int, der_id: int, part: str
    ) -> bytes:
        """GET DERCapability / DERSettings / DERStatus / DERAvailability: as stored."""
        self._check_der(der_id)
        return await self._document(principal, device_id, part)

    async def connection_point(self, principal: Principal, device_id: int) -> bytes:
        if not self.aus:
            raise NotFound("ConnectionPoint is a CSIP-AUS resource (profile csip-aus)")
        return await self._document(principal, device_id, CONNECTION_POINT)

    # ---- writes ---------------------------------------------------------------------
    async def put_der_document(
        self, principal: Principal, device_id: int, der_id: int, part: str, body: bytes
    ) -> str | None:
        """PUT a DER document; DERSettings must be complete and within the ratings.

        Returns the href when the PUT created the document (201 + Location), else None."""
        device = await self.sep2.accessible_device(principal, device_id)
        self._check_der(der_id)
        expected = DER_DOCUMENTS[part]
        root = self._read(body, SEP_NS, expected)
        if expected == "DERSettings":
            present = {etree.QName(c).localname for c in root if isinstance(c.tag, str)}
            missing = missing_settings(present)
            if missing:
                raise InvalidValues("incomplete DERSettings: missing " + ", ".join(missing))
        self._validate(root, expected)
        if expected == "DERSettings":
            stored = await self.sep2.store.get_document(device_id, "dercap")
            capability = None if stored is None else quantities(etree.fromstring(stored, PARSER))
            problems = settings_problems(quantities(root), capability)
            if problems:
                raise InvalidValues("DERSettings: " + "; ".join(problems))
        href = f"{device.href}/der/{DER_ID}/{part}"
        root.set("href", href)
        return await self._put(device_id, part, serialize(root), href, root)

    async def _put(
        self,
        device_id: int,
        kind: str,
        xml: bytes,
        href: str,
        der: etree._Element | None = None,
    ) -> str | None:
        """Store the document (and, for a DER document, its typed facts, in the same unit of
        work); its href when this PUT created it (201 + Location), else None."""
        async with self.sep2.changes.unit_of_work() as tx:
            now = self.sep2.clock.now_int()
            created = await db.update_document(tx.session, device_id, kind, xml, now)
            if der is not None:
                await fleet.record_document(tx, device_id, der, now)
            tx.record(DerDocumentChanged(device_id))
        return href if created else None

    async def put_connection_point(
        self, principal: Principal, device_id: int, body: bytes
    ) -> str | None:
        """PUT csipaus:ConnectionPoint; its connectionPointId must be a valid NMI. Returns the
        href when the PUT created it, else None."""
        if not self.aus:
            raise NotFound("ConnectionPoint is a CSIP-AUS resource (profile csip-aus)")
        device = await self.sep2.accessible_device(principal, device_id)
        root = self._read(body, CSIPAUS_NS, "ConnectionPoint")
        self._validate(root, "ConnectionPoint")
        child = root.find(f"{{{CSIPAUS_NS}}}connectionPointId")
        nmi = "" if child is None or child.text is None else child.text.strip()
        problem = nmi_problem(nmi)
        if problem:
            raise InvalidValues(problem)
        href = f"{device.href}/cp"
        root.set("href", href)
        return await self._put(device_id, CONNECTION_POINT, serialize(root), href)

    async def post_log_event(self, principal: Principal, device_id: int, body: bytes) -> LogEvent:
        """POST a LogEvent (an alarm or event) to the device's LogEventList."""
        device = await self.sep2.accessible_device(principal, device_id)
        root = self.sep2.parse_body(body, "LogEvent")

        def number(name: str) -> int:
            return int(text(root, name) or "0")

        event = LogEvent(
            id=0,
            end_device_id=device.id,
            created_date_time=number("createdDateTime"),
            log_event_id=number("logEventID"),
            log_event_code=number("logEventCode"),
            function_set=number("functionSet"),
            profile_id=number("profileID"),
            log_event_pen=number("logEventPEN"),
            received_at=self.sep2.clock.now_int(),
        )

        def render(href: str) -> bytes:
            root.set("href", href)
            return serialize(root)

        async with self.sep2.changes.unit_of_work() as tx:
            stored = await insert_log_event(tx.session, event, render, LOG_EVENTS_KEPT)
            tx.record(LogEventAdded(device_id))
        return stored

    # ---- LogEventList reads -----------------------------------------------------------
    async def log_events(self, principal: Principal, device_id: int, page: Page) -> bytes:
        device = await self.sep2.accessible_device(principal, device_id)

        async def load() -> tuple[bytes, int]:
            total, events = await self.store.page_log_events(
                device_id, start=page.start, limit=page.limit, after=page.after
            )
            return render_log_events(device, total, events), total

        tags = (tag.edev(device_id), log_tag(device_id))
        return await self._cached_page(("lel", device_id, page.key()), device, page, tags, load)

    async def log_event(self, principal: Principal, device_id: int, event_id: int) -> bytes:
        """One LogEvent; events never change, so found ones stay cached (misses do not)."""
        device = await self.sep2.accessible_device(principal, device_id)
        key = ("lel", device_id, "one", event_id)
        entry = self.sep2.cache.get(key)
        if entry is not None:
            return entry.body
        generation = self.sep2.cache.generation
        event = await self.store.get_log_event(device_id, event_id)
        if event is None:
            raise NotFound(f"no LogEvent {event_id} under {device.href}/lel")
        entry = Entry(event.xml, device, (tag.edev(device_id), log_tag(device_id)))
        self.sep2.cache.put(key, entry, generation)
        return event.xml

    # ---- admin readback ---------------------------------------------------------------
    async def der_json(self, device: EndDevice) -> dict[str, Any]:
        """The device's DER documents as JSON, values exactly as posted, with their times."""
        kinds = [*ADMIN_NAMES, *([CONNECTION_POINT] if self.aus else [])]
        documents = await self.store.documents(device.id, kinds)
        out: dict[str, Any] = {"lfdi": device.lfdi, "href": f"{device.href}/der/{DER_ID}"}
        for kind, name in ADMIN_NAMES.items():
            found = documents.get(kind)
            out[name] = None if found is None else document_json(found)
        if self.aus:
            found = documents.get(CONNECTION_POINT)
            out["connection_point"] = None if found is None else document_json(found)
        return out

    async def log_events_json(self, device: EndDevice, offset: int, limit: int) -> dict[str, Any]:
        total, events = await self.store.page_log_events(device.id, start=offset, limit=limit)
        items = []
        for event in events:
            fields = decode(etree.fromstring(event.xml, PARSER))
            href = fields.pop("href", event.href())
            items.append(
                {"id": event.id, "href": href, "received_at": event.received_at, "fields": fields}
            )
        return {"lfdi": device.lfdi, "total": total, "offset": offset, "items": items}
