"""Server mode: the server-side checks against any IEEE 2030.5 server, over the network.

`csip conformance run --server https://host:port --client-cert dev.pem --ca serca.pem
[--admin csip:URL:TOKEN]` runs each procedure's `checks` (the server half of client
procedures too). The harness is a device here: it discovers, registers, walks, posts,
subscribes with its own HTTPS notification receiver, and checks the answers. Where a check
needs server state (a program and a control for this device, cancelling it), it uses the
admin adapter (see `admin.AdminAdapter`); without one such checks report what they could not
do and the procedure is not applicable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from lxml import etree

from csip.conformance.admin import AdminAdapter, AdminError
from csip.conformance.exchanges import Exchange, exchange
from csip.conformance.procedures import Procedure
from csip.conformance.results import Campaign, ExpectationResult, ProcedureResult
from csip.conformance.runner import lfdi_of_certificate
from csip.progress import progress

NS = "urn:ieee:std:2030.5:ns"
XML = "application/sep+xml"
CCM8 = "ECDHE-ECDSA-AES128-CCM8"


class CheckFailed(AssertionError):
    """A server answer that breaks a rule: the message says which and what came back."""


class NotApplicable(Exception):
    """The check needs something this run does not have (an admin adapter, a 2nd cert)."""


@dataclass
class ServerTarget:
    url: str
    client_cert: Path
    client_key: Path | None
    ca: Path
    second_cert: Path | None = None
    #: the notification receiver's certificate (must chain to the server's trust anchor)
    receiver_cert: Path | None = None
    receiver_key: Path | None = None


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def xml(self) -> etree._Element:
        if not self.body:
            raise CheckFailed(f"expected an XML body, got an empty {self.status} answer")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            return etree.fromstring(self.body, parser)
        except etree.XMLSyntaxError as exc:
            raise CheckFailed(f"unparseable XML ({exc}): {self.body[:200]!r}") from None


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


def link(element: etree._Element, name: str) -> str:
    found = element.find(q(name))
    if found is None or not found.get("href"):
        raise CheckFailed(f"{etree.QName(element).localname} has no {name}")
    return str(found.get("href"))


def text(element: etree._Element, path: str) -> str | None:
    found = element.find("/".join(q(p) for p in path.split("/")))
    return None if found is None else found.text


@dataclass
class Session:
    """The harness as a 2030.5 client: records every exchange it makes."""

    target: ServerTarget
    lfdi: str
    sfdi: int
    exchanges: list[Exchange] = field(default_factory=list)
    _sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    _default: aiohttp.ClientSession | None = None

    def context(
        self, cert: Path | None, key: Path | None, ciphers: str | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.target.ca))
        ctx.check_hostname = True
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers or f"{CCM8}:ECDHE-ECDSA-AES128-GCM-SHA256")
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx

    def session(self, cert: Path | None = None, key: Path | None = None) -> aiohttp.ClientSession:
        if cert is None and self._default is not None:
            return self._default
        if cert is None:
            cert, key = self.target.client_cert, self.target.client_key
        connector = aiohttp.TCPConnector(ssl=self.context(cert, key))
        made = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15))
        self._sessions.append(made)
        if cert is None:
            self._default = made
        return made

    def href(self, path: str) -> str:
        return path if path.startswith("http") else self.target.url.rstrip("/") + path

    async def request(
        self,
        method: str,
        path: str,
        body: str | bytes | None = None,
        session: aiohttp.ClientSession | None = None,
        content_type: str = XML,
    ) -> Reply:
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": content_type} if data is not None else {}
        async with (session or self.session()).request(
            method, self.href(path), data=data, headers=headers, allow_redirects=False
        ) as response:
            reply = Reply(response.status, response.headers, await response.read())
        split = urlsplit(self.href(path))
        self.exchanges.append(
            exchange(
                self.lfdi,
                "request",
                method,
                split.path,
                reply.status,
                data or b"",
                reply.body,
                split.query,
            )
        )
        return reply

    async def get(self, path: str, expect: int = 200) -> Reply:
        reply = await self.request("GET", path)
        if reply.status != expect:
            raise CheckFailed(f"GET {path} answered {reply.status}, expected {expect}")
        return reply

    async def close(self) -> None:
        for made in self._sessions:
            await made.close()


# ---- state the checks share -------------------------------------------------------------------
@dataclass
class State:
    s: Session
    admin: AdminAdapter | None
    dcap: etree._Element | None = None
    edev_href: str = ""
    fsa_list: str = ""
    world: dict[str, Any] = field(default_factory=dict)

    async def discover(self) -> etree._Element:
        if self.dcap is None:
            reply = await self.s.get("/dcap")
            if not reply.headers.get("Content-Type", "").startswith(XML):
                raise CheckFailed(f"/dcap Content-Type is {reply.headers.get('Content-Type')}")
            self.dcap = reply.xml()
            if etree.QName(self.dcap).localname != "DeviceCapability":
                raise CheckFailed(f"/dcap is a {etree.QName(self.dcap).localname}")
        return self.dcap

    async def end_device(self) -> str:
        """This certificate's EndDevice href: listed, else registered in band."""
        if self.edev_href:
            return self.edev_href
        dcap = await self.discover()
        edev_list = link(dcap, "EndDeviceListLink")
        listing = (await self.s.get(edev_list + "?l=255")).xml()
        for device in listing.findall(q("EndDevice")):
            if (text(device, "lFDI") or "").upper() == self.s.lfdi.upper():
                self.edev_href = str(device.get("href"))
                return self.edev_href
        if self.admin is not None:
            with contextlib.suppress(AdminError, NotImplementedError):
                await self.admin.preregister(self.s.lfdi, self.s.sfdi)
                return await self.end_device_listed(edev_list)
        body = (
            f'<EndDevice xmlns="{NS}"><lFDI>{self.s.lfdi}</lFDI><sFDI>{self.s.sfdi}</sFDI>'
            f"<changedTime>{int(time.time())}</changedTime></EndDevice>"
        )
        reply = await self.s.request("POST", edev_list, body)
        if reply.status != 201 or "Location" not in reply.headers:
            raise CheckFailed(f"in-band registration answered {reply.status} without Location")
        self.edev_href = urlsplit(reply.headers["Location"]).path
        return self.edev_href

    async def end_device_listed(self, edev_list: str) -> str:
        listing = (await self.s.get(edev_list + "?l=255")).xml()
        for device in listing.findall(q("EndDevice")):
            if (text(device, "lFDI") or "").upper() == self.s.lfdi.upper():
                self.edev_href = str(device.get("href"))
                return self.edev_href
        raise CheckFailed("the pre-registered EndDevice is not in the EndDeviceList")

    async def program_world(self) -> dict[str, Any]:
        """A group with this device, a program and a control starting in 10 minutes."""
        if self.world:
            return self.world
        if self.admin is None:
            raise NotApplicable("needs an admin adapter (--admin) to create a program and control")
        await self.end_device()
        group = await self.admin.create_group("harness")
        await self.admin.add_member(int(group["id"]), self.s.lfdi)
        program = await self.admin.create_program(int(group["id"]), "harness", 50)
        now = await self.admin.now()
        control = await self.admin.create_control(
            int(program["id"]),
            {
                "start": int(now) + 600,
                "duration": 300,
                "base": {"opModMaxLimW": 5000},
                "response_required": "03",
            },
        )
        self.world = {"group": group, "program": program, "control": control}
        return self.world


Check = Callable[[State], Awaitable[str]]


# ---- the checks -------------------------------------------------------------------------------
async def check_discovery(st: State) -> str:
    dcap = await st.discover()
    for name in ("EndDeviceListLink", "TimeLink"):
        link(dcap, name)
    if dcap.get("pollRate") is None:
        return "DeviceCapability served (pollRate absent: the default 900 s applies)"
    return f"DeviceCapability served with pollRate {dcap.get('pollRate')}"


async def check_tls(st: State) -> str:
    split = urlsplit(st.s.target.url)
    host, port = split.hostname or "localhost", split.port or 443
    context = st.s.context(st.s.target.client_cert, st.s.target.client_key, ciphers=CCM8)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host), 10
    )
    ssl_object = writer.get_extra_info("ssl_object")
    cipher = ssl_object.cipher() if ssl_object else None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    del reader
    if not cipher or cipher[0] != CCM8 or cipher[1] != "TLSv1.2":
        raise CheckFailed(f"a CCM8-only TLS 1.2 client negotiated {cipher}")
    # without a client certificate: refused at the handshake or answered 403
    bare = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=st.s.context(None, None)),
        timeout=aiohttp.ClientTimeout(total=10),
    )
    try:
        async with bare.get(st.s.href("/dcap")) as response:
            if response.status != 403:
                raise CheckFailed(f"/dcap without a client certificate answered {response.status}")
            return f"{CCM8} on TLS 1.2; no client certificate -> 403"
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
        return f"{CCM8} on TLS 1.2; no client certificate -> refused at the handshake"
    finally:
        await bare.close()


async def check_redirect(st: State) -> str:
    split = urlsplit(st.s.target.url)
    host, port = split.hostname or "localhost", split.port or 443
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    try:
        writer.write(f"GET /dcap HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(4096), 10)
        except (TimeoutError, ConnectionError):
            answer = b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if b"DeviceCapability" in answer:
        raise CheckFailed("plain HTTP on the TLS port was served DeviceCapability")
    first = answer.split(b"\r\n", 1)[0].decode("latin-1")
    return f"plain HTTP on the TLS port not served ({first or 'connection closed'})"


async def check_methods(st: State) -> str:
    await st.discover()
    head = await st.s.request("HEAD", "/dcap")
    if head.status != 200 or head.body:
        raise CheckFailed(f"HEAD /dcap answered {head.status} with {len(head.body)} bytes")
    wrong = await st.s.request("DELETE", "/dcap")
    if wrong.status != 405 or "Allow" not in wrong.headers:
        raise CheckFailed(
            f"DELETE /dcap answered {wrong.status} (Allow {wrong.headers.get('Allow')})"
        )
    missing = await st.s.request("GET", "/no-such-resource-here")
    if missing.status != 404:
        raise CheckFailed(f"GET of an unknown path answered {missing.status}")
    return "HEAD 200 without body; DELETE /dcap 405 with Allow; unknown path 404"


async def check_error_answers(st: State) -> str:
    edev_list = link(await st.discover(), "EndDeviceListLink")
    bad = await st.s.request("POST", edev_list, "<EndDevice xmlns='urn:ieee:std:2030.5:ns'><oops")
    if bad.status != 400:
        raise CheckFailed(f"malformed XML answered {bad.status}")
    if bad.body and etree.QName(bad.xml()).localname != "Error":
        raise CheckFailed("a 400 answer's body is not a 2030.5 Error")
    entity = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        f'<EndDevice xmlns="{NS}"><lFDI>&e;</lFDI></EndDevice>'
    )
    xxe = await st.s.request("POST", edev_list, entity)
    if xxe.status < 400 or b"root:" in xxe.body:
        raise CheckFailed(f"a body with an external entity answered {xxe.status}")
    return f"malformed XML -> 400 Error; external entity -> {xxe.status}"


async def check_access_control(st: State) -> str:
    mine = await st.end_device()
    if st.s.target.second_cert is None:
        probe = await st.s.request("GET", "/edev/987654321")
        if probe.status not in (403, 404):
            raise CheckFailed(f"another EndDevice's href answered {probe.status}")
        return f"an EndDevice that is not ours -> {probe.status} (no --second-cert: one device)"
    other = st.s.session(st.s.target.second_cert, None)
    reply = await st.s.request("GET", mine, session=other)
    if reply.status not in (403, 404):
        raise CheckFailed(f"another device read our EndDevice {mine}: {reply.status}")
    return f"another device's certificate reading {mine} -> {reply.status}"


async def check_paging(st: State) -> str:
    edev_list = link(await st.discover(), "EndDeviceListLink")
    await st.end_device()
    page = (await st.s.get(edev_list + "?s=0&l=1")).xml()
    if page.get("all") is None or page.get("results") is None:
        raise CheckFailed("a list lacks the all / results attributes")
    if int(page.get("results", "0")) > 1:
        raise CheckFailed(f"l=1 returned {page.get('results')} results")
    beyond = (await st.s.get(f"{edev_list}?s={int(page.get('all', '0')) + 5}&l=5")).xml()
    if int(beyond.get("results", "-1")) != 0:
        raise CheckFailed("a page past the end is not empty")
    for query in ("s=-1", "l=abc"):
        reply = await st.s.request("GET", f"{edev_list}?{query}")
        if reply.status != 400:
            raise CheckFailed(f"?{query} answered {reply.status}, expected 400")
    return f"s/l honoured (all={page.get('all')}), past-the-end empty, bad values 400"


async def check_time(st: State) -> str:
    tm = (await st.s.get(link(await st.discover(), "TimeLink"))).xml()
    current = text(tm, "currentTime")
    if current is None or text(tm, "quality") is None:
        raise CheckFailed("Time lacks currentTime or quality")
    skew = int(current) - time.time()
    if st.admin is not None:
        skew = int(current) - await st.admin.now()
    if abs(skew) > 5:
        raise CheckFailed(f"currentTime is {skew:.0f}s off the server's clock")
    return f"currentTime within {abs(skew):.0f}s, quality {text(tm, 'quality')}"


async def check_registration(st: State) -> str:
    href = await st.end_device()
    device = (await st.s.get(href)).xml()
    if (text(device, "lFDI") or "").upper() != st.s.lfdi.upper():
        raise CheckFailed("the EndDevice's lFDI is not the certificate's")
    if text(device, "sFDI") != str(st.s.sfdi):
        raise CheckFailed(f"sFDI {text(device, 'sFDI')} is not the certificate's {st.s.sfdi}")
    registration = (await st.s.get(link(device, "RegistrationLink"))).xml()
    if text(registration, "pIN") is None:
        raise CheckFailed("Registration has no pIN")
    return f"EndDevice {href} with our LFDI/SFDI and a Registration PIN"


async def _walk(st: State) -> tuple[etree._Element, str]:
    """FSA list -> the harness program's DERControlList."""
    world = await st.program_world()
    device = (await st.s.get(await st.end_device())).xml()
    fsal = (await st.s.get(link(device, "FunctionSetAssignmentsListLink") + "?l=255")).xml()
    program_href = str(world["program"]["href"])
    for fsa in fsal.findall(q("FunctionSetAssignments")):
        programs = (await st.s.get(link(fsa, "DERProgramListLink") + "?l=255")).xml()
        for program in programs.findall(q("DERProgram")):
            if program.get("href") == program_href:
                controls = link(program, "DERControlListLink")
                return (await st.s.get(controls + "?l=255")).xml(), controls
    raise CheckFailed(f"program {program_href} not found by walking the device's FSAs")


async def check_fsa_walk(st: State) -> str:
    controls, href = await _walk(st)
    mrid = str(st.world["control"]["mrid"]).upper()
    found = [
        c for c in controls.findall(q("DERControl")) if (text(c, "mRID") or "").upper() == mrid
    ]
    if not found:
        raise CheckFailed(f"control {mrid} not in {href}")
    return f"walked FSA -> DERProgram -> {href} and found the control"


def _control(controls: etree._Element, mrid: str) -> etree._Element:
    for control in controls.findall(q("DERControl")):
        if (text(control, "mRID") or "").upper() == mrid.upper():
            return control
    raise CheckFailed(f"control {mrid} missing")


async def check_event_status(st: State) -> str:
    controls, href = await _walk(st)
    mrid = str(st.world["control"]["mrid"])
    status = text(_control(controls, mrid), "EventStatus/currentStatus")
    if status != "0":
        raise CheckFailed(f"a control starting in 10 minutes has currentStatus {status}, not 0")
    assert st.admin is not None
    await st.admin.cancel_control(int(st.world["control"]["id"]))
    after = (await st.s.get(href + "?l=255")).xml()
    cancelled = text(_control(after, mrid), "EventStatus/currentStatus")
    if cancelled != "2":
        raise CheckFailed(f"a cancelled control has currentStatus {cancelled}, not 2")
    st.world = {}  # the next check needs a live control
    return "scheduled -> currentStatus 0; cancelled -> 2"


async def check_responses(st: State) -> str:
    controls, _ = await _walk(st)
    control = _control(controls, str(st.world["control"]["mrid"]))
    reply_to = control.get("replyTo")
    if not reply_to:
        raise CheckFailed("a control with responseRequired has no replyTo")
    body = (
        f'<Response xmlns="{NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
        f"<endDeviceLFDI>{st.s.lfdi}</endDeviceLFDI><status>1</status>"
        f"<subject>{text(control, 'mRID')}</subject></Response>"
    )
    reply = await st.s.request("POST", reply_to, body)
    if reply.status not in (201, 204):
        raise CheckFailed(f"POST Response answered {reply.status}")
    return f"Response posted to {reply_to}: {reply.status}"


MUP = """<MirrorUsagePoint xmlns="urn:ieee:std:2030.5:ns"><mRID>{mrid}</mRID>
<description>harness</description><roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind>
<status>1</status><deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{rmrid}</mRID>
<description>W</description><Reading><timePeriod><duration>60</duration>
<start>{start}</start></timePeriod><value>1500</value></Reading>
<ReadingType><accumulationBehaviour>12</accumulationBehaviour><commodity>1</commodity>
<dataQualifier>2</dataQualifier><flowDirection>1</flowDirection><kind>37</kind><phase>0</phase>
<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType></MirrorMeterReading>
</MirrorUsagePoint>"""


async def check_mirror_usage_points(st: State) -> str:
    await st.end_device()
    dcap = await st.discover()
    mup_list = link(dcap, "MirrorUsagePointListLink")
    suffix = st.s.lfdi[-8:].upper()
    body = MUP.format(
        mrid=f"AB{suffix}" + "0" * 14 + "00009C40",
        rmrid=f"AC{suffix}" + "0" * 14 + "00009C40",
        lfdi=st.s.lfdi,
        start=int(time.time()) // 60 * 60,
    )
    reply = await st.s.request("POST", mup_list, body)
    if reply.status not in (201, 204) or "Location" not in reply.headers:
        raise CheckFailed(f"POST MirrorUsagePoint answered {reply.status} {reply.body[:200]!r}")
    href = urlsplit(reply.headers["Location"]).path
    mup = (await st.s.get(href)).xml()
    if etree.QName(mup).localname != "MirrorUsagePoint":
        raise CheckFailed(f"{href} is a {etree.QName(mup).localname}")
    return f"MirrorUsagePoint created at {href} and read back"


async def check_der_documents(st: State) -> str:
    device = (await st.s.get(await st.end_device())).xml()
    der_list = (await st.s.get(link(device, "DERListLink"))).xml()
    ders = der_list.findall(q("DER"))
    if not ders:
        raise CheckFailed("the EndDevice's DERList is empty")
    for name in ("DERCapabilityLink", "DERSettingsLink", "DERStatusLink"):
        link(ders[0], name)
    return "DERList with a DER linking DERCapability, DERSettings and DERStatus"


@dataclass
class NotificationReceiver:
    """The harness's own HTTPS endpoint for Notifications."""

    received: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self, cert: Path, key: Path | None, ca: Path) -> None:
        async def notify(request: web.Request) -> web.Response:
            self.received.append(await request.read())
            self.arrived.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/notify", notify)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key) if key else None)
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_OPTIONAL
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = int(self.runner.addresses[0][1])
        self.url = f"https://localhost:{port}/notify"

    async def wait(self, count: int, seconds: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(seconds):
                while len(self.received) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        return len(self.received) >= count

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def check_subscriptions(st: State) -> str:
    if st.admin is None:
        raise NotApplicable("needs an admin adapter (--admin) to change a subscribed resource")
    await st.program_world()
    _, controls = await _walk(st)
    target = st.s.target
    receiver = NotificationReceiver()
    await receiver.start(
        target.receiver_cert or target.client_cert,
        target.receiver_key if target.receiver_cert else target.client_key,
        target.ca,
    )
    try:
        body = (
            f'<Subscription xmlns="{NS}"><subscribedResource>{controls}</subscribedResource>'
            f"<encoding>0</encoding><level>-S1-L1-R1</level><limit>5</limit>"
            f"<notificationURI>{receiver.url}</notificationURI></Subscription>"
        )
        reply = await st.s.request("POST", await st.end_device() + "/sub", body)
        if reply.status != 201 or "Location" not in reply.headers:
            raise CheckFailed(f"POST Subscription answered {reply.status} {reply.body[:200]!r}")
        program_id = int(st.world["program"]["id"])
        now = await st.admin.now()
        await st.admin.create_control(
            program_id,
            {"start": int(now) + 900, "duration": 60, "base": {"opModConnect": True}},
        )
        if not await receiver.wait(1, 20):
            raise CheckFailed("no Notification arrived within 20 s of a new control")
        note = etree.fromstring(receiver.received[0])
        if etree.QName(note).localname != "Notification":
            raise CheckFailed(f"the notification body is a {etree.QName(note).localname}")
        if text(note, "subscribedResource") != controls:
            raise CheckFailed(f"the notification names {text(note, 'subscribedResource')}")
        await st.s.request("DELETE", urlsplit(reply.headers["Location"]).path)
        return f"Subscription to {controls} notified in {len(receiver.received)} message(s)"
    finally:
        await receiver.stop()


CHECKS: dict[str, Check] = {
    "discovery": check_discovery,
    "tls": check_tls,
    "redirect": check_redirect,
    "methods": check_methods,
    "error-answers": check_error_answers,
    "access-control": check_access_control,
    "paging": check_paging,
    "time": check_time,
    "registration": check_registration,
    "fsa-walk": check_fsa_walk,
    "event-status": check_event_status,
    "responses": check_responses,
    "mirror-usage-points": check_mirror_usage_points,
    "der-documents": check_der_documents,
    "subscriptions": check_subscriptions,
}


async def run_server_mode(
    target: ServerTarget, procedures: list[Procedure], admin: AdminAdapter | None = None
) -> Campaign:
    """Each procedure with server checks, in order; one column ("server") in the matrix."""
    lfdi, sfdi = lfdi_of_certificate(target.client_cert)
    session = Session(target, lfdi.upper(), sfdi)
    state = State(session, admin)
    campaign = Campaign(name=f"server {target.url}", mode="server")
    campaign.server = {"url": target.url, "client LFDI": lfdi, "admin adapter": bool(admin)}
    campaign.devices = [{"name": "server", "class": "server", "lfdi": lfdi, "function_sets": []}]
    chosen = [p for p in procedures if p.checks and p.status == "ready"]
    campaign.procedures = [p.id for p in chosen]
    try:
        with progress("server checks", len(chosen)) as bar:
            for procedure in chosen:
                bar.describe(f"server checks: {procedure.id}")
                campaign.results.append(await _run_procedure(state, procedure))
                bar.advance()
    finally:
        await session.close()
        if admin is not None:
            await admin.close()
    campaign.finished = time.time()
    return campaign


async def _run_procedure(state: State, procedure: Procedure) -> ProcedureResult:
    result = ProcedureResult(procedure.id, "server", "pass", procedure.title, procedure.clause)
    result.started = time.time()
    first = len(state.s.exchanges)
    skipped: list[str] = []
    for name in procedure.checks:
        before = len(state.s.exchanges)
        started = time.time() - result.started
        verdict, detail = "pass", ""
        try:
            detail = await asyncio.wait_for(CHECKS[name](state), 60)
        except CheckFailed as exc:
            verdict, detail = "fail", str(exc)
        except NotApplicable as exc:
            verdict, detail = "not-applicable", str(exc)
            skipped.append(name)
        except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError, AdminError) as exc:
            verdict, detail = "fail", f"{type(exc).__name__}: {exc}"
        evidence = list(range(before - first, len(state.s.exchanges) - first))
        result.expectations.append(
            ExpectationResult(
                name,
                f"server check {name!r}",
                verdict,
                detail,
                (started, time.time() - result.started),
                evidence,
            )
        )
    result.exchanges = state.s.exchanges[first:]
    verdicts = {e.verdict for e in result.expectations}
    if "fail" in verdicts:
        result.outcome = "fail"
    elif verdicts == {"not-applicable"}:
        result.outcome = "not-applicable"
        result.reason = "; ".join(e.detail for e in result.expectations)
    if skipped and result.outcome == "pass":
        result.notes.append("not run: " + ", ".join(skipped))
    result.duration = time.time() - result.started
    return result
