"""One IEEE 2030.5 client: what the tests, the benchmarks, the conformance harness and the OEM
simulator use to talk to a 2030.5 server (csip or any other) over mutual TLS.

It speaks only HTTP over the network (a black box to the server), keeps connections alive
(handshakes are the expensive part), offers CCM8 first as the server does
(``csip.web.tls.client_context``), reads every reply with the hardened parser of
``csip.sep2.xml`` and, when given a validator, checks every 2030.5 body it receives against
the schema (``InvalidReply``).

The typed helpers follow a device's walk (CSIP IG §5-6): /dcap -> /tm -> /edev (register when
absent) -> EndDevice -> FunctionSetAssignmentsList -> DERProgramList -> DERControlList,
DefaultDERControl, DERCurves; then what a device writes: DER documents, Responses, mirror
usage points and readings, subscriptions. Lists are read whole, page by page (``s``/``l``).
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from lxml import etree

from csip.sep2.xml import CONTENT_TYPE, PARSER, E, serialize, tag
from csip.web.tls import client_context

__all__ = [
    "InvalidReply",
    "MirrorReading",
    "ProgramView",
    "Reply",
    "Sep2Client",
    "Sep2Error",
    "mrid_for",
]

#: Replies larger than this are refused (a simulator must not be fed unbounded documents).
MAX_REPLY_BYTES = 4 * 1024 * 1024
#: Page size asked for when reading a list whole.
PAGE = 255
#: Upper bound of pages read from one list (a server that never ends its list is a bug).
MAX_PAGES = 1000


class Sep2Error(Exception):
    """A typed helper got an answer it cannot use (status, or a missing element)."""

    def __init__(self, message: str, status: int = 0, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class InvalidReply(Sep2Error):
    """The server sent a 2030.5 body that does not validate against the schema."""


@dataclass
class Reply:
    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    _root: etree._Element | None = field(default=None, repr=False)

    @property
    def is_xml(self) -> bool:
        return bool(self.body) and self.headers.get("Content-Type", "").startswith(CONTENT_TYPE)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def xml(self) -> etree._Element:
        """The body read with the hardened parser (any 2030.5 root)."""
        if self._root is None:
            self._root = _parse(self.body)
        return self._root


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, refused past MAX_REPLY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise Sep2Error(f"{response.url} answered more than {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> etree._Element:
    """The hardened read of ``csip.sep2.xml``: size cap, no DTD, entities and network off."""
    if len(body) > MAX_REPLY_BYTES:
        raise Sep2Error(f"a {len(body)}-byte reply is over the {MAX_REPLY_BYTES} limit")
    if b"<!DOCTYPE" in body.upper():
        raise Sep2Error("a reply with a DTD is refused", body=body[:500])
    try:
        root: etree._Element = etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError as exc:
        raise Sep2Error(f"malformed XML: {exc.msg}", body=body[:500]) from exc
    return root


def _text(element: etree._Element, name: str) -> str | None:
    child = element.find(tag(name))
    return None if child is None or child.text is None else child.text.strip()


def _int(element: etree._Element, name: str, default: int | None = None) -> int | None:
    value = _text(element, name)
    return default if value is None else int(value)


def _link(element: etree._Element, name: str) -> str | None:
    child = element.find(tag(name))
    return None if child is None else child.get("href")


def mrid_for(*parts: str, pen: int = 0) -> str:
    """A stable mRID for something a device creates (HexBinary128), PEN in the low 32 bits
    as IEEE 2030.5 asks of whoever mints it."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:24].upper()
    return f"{digest}{pen & 0xFFFFFFFF:08X}"


@dataclass
class ProgramView:
    """One DERProgram as a device sees it after a walk."""

    href: str
    mrid: str
    primacy: int
    program: etree._Element
    controls: list[etree._Element]
    default: etree._Element | None
    curves: dict[str, etree._Element]
    #: the pollRate of the DERProgramList it was found in (seconds)
    poll_rate: int | None = None


@dataclass(frozen=True)
class MirrorReading:
    """One quantity a device mirrors: its ReadingType and the value to post."""

    name: str
    uom: int
    value: int
    multiplier: int = 0
    kind: int = 37
    phase: int = 0
    data_qualifier: int | None = 2


class Sep2Client:
    """An asyncio 2030.5 client over mutual TLS, one keep-alive connection pool.

    ``base`` is https://host:port. Give it an SSL context (``client_context``) or build one
    from files with ``from_files``. ``validator`` (an lxml XMLSchema) checks each 2030.5 body
    received. ``requests``/``errors`` count what it did, for summaries.
    """

    def __init__(
        self,
        base: str,
        context: ssl.SSLContext | None,
        *,
        validator: etree.XMLSchema | None = None,
        timeout: float = 30.0,
        limit: int = 4,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.validator = validator
        self._own_session = session is None
        if session is None:
            connector = aiohttp.TCPConnector(
                ssl=context if context is not None else False,
                limit=limit,
                # under the server's (aiohttp: 75 s), so the client drops an idle
                # connection before the server does and never sends on a closing one
                keepalive_timeout=15,
            )
            session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
            )
        self.session = session
        self.requests = 0
        self.errors = 0

    @classmethod
    def from_files(
        cls,
        base: str,
        *,
        cert: Path,
        ca: Path,
        key: Path | None = None,
        validator: etree.XMLSchema | None = None,
        timeout: float = 30.0,
        limit: int = 4,
    ) -> Sep2Client:
        """``cert`` is the device's chain, or its combined PEM (chain and key in one file)."""
        context = client_context(ca_file=ca, cert_chain_file=cert, key_file=key)
        return cls(base, context, validator=validator, timeout=timeout, limit=limit)

    async def close(self) -> None:
        if self._own_session:
            await self.session.close()

    async def __aenter__(self) -> Sep2Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- HTTP ------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | str | etree._Element | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One exchange. Never follows redirects; validates the 2030.5 body it receives."""
        sent = dict(headers or {})
        data: bytes | None
        if isinstance(body, etree._Element):
            data = serialize(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        if data is not None:
            sent.setdefault("Content-Type", CONTENT_TYPE)
        self.requests += 1
        try:
            async with self.session.request(
                method, self.url(path), data=data, headers=sent, allow_redirects=False
            ) as response:
                payload = await _read_capped(response)
                reply = Reply(method, path, response.status, response.headers, payload)
        except BaseException:
            self.errors += 1
            raise
        if reply.status >= 400:
            self.errors += 1
        if self.validator is not None and reply.is_xml:
            root = reply.xml()
            if not self.validator.validate(root):
                raise InvalidReply(
                    f"{method} {path} answered a body invalid against the schema: "
                    f"{self.validator.error_log}\n{reply.body.decode(errors='replace')}",
                    reply.status,
                    reply.body,
                )
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, body: bytes | str | etree._Element) -> Reply:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: bytes | str | etree._Element) -> Reply:
        return await self.request("PUT", path, body)

    async def delete(self, path: str) -> Reply:
        return await self.request("DELETE", path)

    async def get_xml(self, path: str) -> etree._Element:
        """GET a 2030.5 resource; Sep2Error unless it answers 200 with XML."""
        reply = await self.get(path)
        if reply.status != 200 or not reply.is_xml:
            raise Sep2Error(f"GET {path}: HTTP {reply.status}", reply.status, reply.body)
        return reply.xml()

    async def get_list(self, href: str, item: str) -> tuple[etree._Element, list[etree._Element]]:
        """A whole 2030.5 list, page by page: (first page's root, every `item` element)."""
        items: list[etree._Element] = []
        first: etree._Element | None = None
        base = href.split("?", 1)[0]
        for _ in range(MAX_PAGES):
            root = await self.get_xml(f"{base}?s={len(items)}&l={PAGE}")
            first = root if first is None else first
            page = root.findall(tag(item))
            items.extend(page)
            total = int(root.get("all", "0"))
            if not page or len(items) >= total:
                break
        assert first is not None
        return first, items

    # ---- the walk --------------------------------------------------------------------------
    async def time(self, href: str = "/tm") -> int:
        """The server's currentTime (what a device sets its clock from)."""
        current = _int(await self.get_xml(href), "currentTime")
        if current is None:
            raise Sep2Error(f"{href} has no currentTime")
        return current

    async def dcap(self, href: str = "/dcap") -> dict[str, str]:
        """DeviceCapability's links by name (TimeLink, EndDeviceListLink, ...)."""
        root = await self.get_xml(href)
        return {etree.QName(c).localname: c.get("href", "") for c in root if c.get("href")}

    async def end_devices(self, href: str = "/edev") -> list[etree._Element]:
        return (await self.get_list(href, "EndDevice"))[1]

    async def register(
        self, lfdi: str, sfdi: int, *, href: str = "/edev", changed: int = 0
    ) -> Reply:
        """POST an EndDevice (in-band registration); 201 with Location when created."""
        body = E.EndDevice(E.lFDI(lfdi), E.sFDI(str(sfdi)), E.changedTime(str(changed)))
        return await self.post(href, body)

    async def find_or_register(
        self, lfdi: str, sfdi: int, *, href: str = "/edev", changed: int = 0
    ) -> str:
        """The href of the EndDevice with this LFDI, registering it when the list lacks it."""
        for device in await self.end_devices(href):
            if (_text(device, "lFDI") or "").upper() == lfdi.upper() and device.get("href"):
                return str(device.get("href"))
        reply = await self.register(lfdi, sfdi, href=href, changed=changed)
        if reply.status != 201 or reply.location is None:
            raise Sep2Error(f"POST {href}: HTTP {reply.status}", reply.status, reply.body)
        return reply.location

    async def end_device_links(self, edev_href: str) -> dict[str, str]:
        root = await self.get_xml(edev_href)
        return {etree.QName(c).localname: c.get("href", "") for c in root if c.get("href")}

    async def programs(self, fsa_list_href: str) -> list[ProgramView]:
        """Every DERProgram reached through the FSA list, once each, with its controls,
        DefaultDERControl and the curves those reference."""
        _, groups = await self.get_list(fsa_list_href, "FunctionSetAssignments")
        seen: dict[str, ProgramView] = {}
        for group in groups:
            derp_href = _link(group, "DERProgramListLink")
            if derp_href is None:
                continue
            listing, programs = await self.get_list(derp_href, "DERProgram")
            rate = listing.get("pollRate")
            for program in programs:
                href = program.get("href", "")
                if href and href not in seen:
                    seen[href] = await self.program_view(program)
                    seen[href].poll_rate = int(rate) if rate else None
        return sorted(seen.values(), key=lambda p: (p.primacy, p.href))

    async def program_view(self, program: etree._Element) -> ProgramView:
        href = program.get("href", "")
        controls: list[etree._Element] = []
        control_list = _link(program, "DERControlListLink")
        if control_list is not None:
            controls = (await self.get_list(control_list, "DERControl"))[1]
        default: etree._Element | None = None
        default_href = _link(program, "DefaultDERControlLink")
        if default_href is not None:
            reply = await self.get(default_href)
            default = reply.xml() if reply.status == 200 and reply.is_xml else None
        curves: dict[str, etree._Element] = {}
        for holder in [*controls, *([default] if default is not None else [])]:
            for curve_href in curve_links(holder):
                if curve_href not in curves:
                    curves[curve_href] = await self.get_xml(curve_href)
        return ProgramView(
            href=href,
            mrid=_text(program, "mRID") or "",
            primacy=_int(program, "primacy", 0) or 0,
            program=program,
            controls=controls,
            default=default,
            curves=curves,
        )

    # ---- what a device writes --------------------------------------------------------------
    async def post_response(
        self, reply_to: str, *, subject: str, lfdi: str, status: int, created: int
    ) -> Reply:
        """A DERControlResponse (IEEE 2030.5 Table 27 status) to the control's replyTo."""
        body = E.DERControlResponse(
            E.createdDateTime(str(created)),
            E.endDeviceLFDI(lfdi),
            E.status(str(status)),
            E.subject(subject),
        )
        return await self.post(reply_to, body)

    async def put_document(self, href: str, document: etree._Element) -> Reply:
        """PUT a DERCapability, DERSettings, DERStatus or DERAvailability (or any document)."""
        return await self.put(href, document)

    async def create_mirror_usage_point(
        self,
        *,
        lfdi: str,
        mrid: str,
        description: str,
        readings: Sequence[MirrorReading],
        pen: int = 0,
        href: str = "/mup",
    ) -> str:
        """POST a MirrorUsagePoint declaring one MirrorMeterReading per quantity; its href.

        `description` is cut to 32 characters (String32): a longer one is refused with 400.
        """
        mmrs = [
            E.MirrorMeterReading(
                E.mRID(mrid_for(mrid, r.name, pen=pen)),
                E.description(r.name),
                _reading_type(r),
            )
            for r in readings
        ]
        body = E.MirrorUsagePoint(
            E.mRID(mrid),
            E.description(description[:32]),
            E.roleFlags("0049"),
            E.serviceCategoryKind("0"),
            E.status("1"),
            E.deviceLFDI(lfdi),
            *mmrs,
        )
        reply = await self.post(href, body)
        if reply.status not in (200, 201, 204) or reply.location is None:
            raise Sep2Error(f"POST {href}: HTTP {reply.status}", reply.status, reply.body)
        return reply.location

    async def post_readings(
        self,
        mup_href: str,
        *,
        mrid: str,
        readings: Iterable[MirrorReading],
        start: int,
        duration: int,
        pen: int = 0,
    ) -> Reply:
        """POST one MirrorMeterReadingList with a Reading per quantity."""
        items = [
            E.MirrorMeterReading(
                E.mRID(mrid_for(mrid, r.name, pen=pen)),
                E.Reading(
                    E.timePeriod(E.duration(str(duration)), E.start(str(start))),
                    E.value(str(r.value)),
                ),
            )
            for r in readings
        ]
        body = E.MirrorMeterReadingList(*items, all=str(len(items)), results=str(len(items)))
        return await self.post(mup_href, body)

    async def subscribe(
        self,
        subscription_list: str,
        *,
        resource: str,
        uri: str,
        limit: int = 10,
    ) -> str:
        """POST a Subscription to ``resource`` with notifications to ``uri``; its href."""
        body = E.Subscription(
            E.subscribedResource(resource),
            E.encoding("0"),
            E.level("-S1-L1-R1"),
            E.limit(str(limit)),
            E.notificationURI(uri),
        )
        reply = await self.post(subscription_list, body)
        if reply.status != 201 or reply.location is None:
            raise Sep2Error(
                f"POST {subscription_list}: HTTP {reply.status}", reply.status, reply.body
            )
        return reply.location


def _reading_type(r: MirrorReading) -> etree._Element:
    fields: list[tuple[str, int | None]] = [
        ("dataQualifier", r.data_qualifier),
        ("kind", r.kind),
        ("phase", r.phase),
        ("powerOfTenMultiplier", r.multiplier),
        ("uom", r.uom),
    ]
    children: list[Any] = [
        getattr(E, name)(str(value)) for name, value in fields if value is not None
    ]
    element: etree._Element = E.ReadingType(*children)
    return element


def curve_links(holder: etree._Element) -> list[str]:
    """The DERCurve hrefs a DERControl or DefaultDERControl points to (curve modes)."""
    base = holder.find(tag("DERControlBase"))
    if base is None:
        return []
    return [str(child.get("href")) for child in base if child.get("href")]
