"""A minimal 2030.5 device for the harness's own tests (the real simulator is `csip sim`).

Run as its own process, as a lab's device would be: it walks /dcap -> EndDevice -> FSAs ->
DERPrograms -> DERControls at a short poll interval, answers each control's Responses
(Received, Started at its start, Completed at its end, Cancelled, Superseded), reads
DefaultDERControls and curves, PUTs its DER documents and posts meter readings at the
postRate it is given. `--fault` breaks one behaviour on purpose:

  no-responses   never posts a Response
  early-start    posts Started as soon as it reads a control, before its start

With `--receiver-cert/--receiver-key` it also subscribes to each DERControlList it finds and
runs its own HTTPS notification endpoint (a walk follows each notification).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import ssl
import time

import aiohttp
from aiohttp import web
from lxml import etree

NS = "urn:ieee:std:2030.5:ns"
XML = {"Content-Type": "application/sep+xml"}


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


def href(element: etree._Element, name: str) -> str | None:
    found = element.find(q(name))
    return None if found is None else found.get("href")


def text(element: etree._Element, path: str) -> str | None:
    found = element.find("/".join(q(p) for p in path.split("/")))
    return None if found is None else found.text


class Device:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = args.url.rstrip("/")
        self.context = ssl.create_default_context(cafile=args.ca)
        self.context.load_cert_chain(args.cert, args.key)
        self._session: aiohttp.ClientSession | None = None
        self.sent: set[tuple[str, int]] = set()
        self.offset = 0.0
        self.mup: str | None = None
        self.last_post = 0.0
        self.post_rate = 300.0
        self.documents_done = False
        self.subscribed: set[str] = set()
        self.notify_url = ""
        self.wake = asyncio.Event()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.context),
                timeout=aiohttp.ClientTimeout(total=10),
            )
        return self._session

    async def get(self, path: str) -> etree._Element | None:
        async with self.session.get(self.base + path) as response:
            body = await response.read()
            return etree.fromstring(body) if response.status == 200 and body else None

    async def send(self, method: str, path: str, body: str) -> tuple[int, str]:
        async with self.session.request(method, self.base + path, data=body, headers=XML) as r:
            await r.read()
            return r.status, r.headers.get("Location", "")

    def now(self) -> float:
        return time.time() + self.offset

    async def respond(self, control: etree._Element, status: int) -> None:
        mrid = text(control, "mRID") or ""
        reply_to = control.get("replyTo")
        if (mrid, status) in self.sent or not reply_to or self.args.fault == "no-responses":
            return
        self.sent.add((mrid, status))
        body = (
            f'<Response xmlns="{NS}"><createdDateTime>{int(self.now())}</createdDateTime>'
            f"<endDeviceLFDI>{self.args.lfdi}</endDeviceLFDI><status>{status}</status>"
            f"<subject>{mrid}</subject></Response>"
        )
        await self.send("POST", reply_to, body)

    async def control(self, control: etree._Element) -> None:
        start = int(text(control, "interval/start") or 0)
        duration = int(text(control, "interval/duration") or 0)
        current = text(control, "EventStatus/currentStatus")
        await self.respond(control, 1)
        if current == "2":
            await self.respond(control, 6)
            return
        if current == "4":
            await self.respond(control, 7)
            return
        now = self.now()
        if now >= start or self.args.fault == "early-start":
            await self.respond(control, 2)
        if now >= start + duration:
            await self.respond(control, 3)

    async def walk(self) -> None:
        dcap = await self.get("/dcap")
        if dcap is None:
            return
        tm = href(dcap, "TimeLink")
        if tm:
            clock = await self.get(tm)
            if clock is not None:
                self.offset = int(text(clock, "currentTime") or time.time()) - time.time()
        edev_list = await self.get((href(dcap, "EndDeviceListLink") or "/edev") + "?l=10")
        if edev_list is None:
            return
        devices = edev_list.findall(q("EndDevice"))
        if not devices:
            return
        edev_href = devices[0].get("href") or ""
        edev = await self.get(edev_href)
        if edev is None:
            return
        if href(edev, "RegistrationLink"):
            await self.get(href(edev, "RegistrationLink") or "")
        await self.documents(edev)
        fsa_list = await self.get((href(edev, "FunctionSetAssignmentsListLink") or "") + "?l=255")
        for fsa in [] if fsa_list is None else fsa_list.findall(q("FunctionSetAssignments")):
            programs = await self.get((href(fsa, "DERProgramListLink") or "") + "?l=255")
            for program in [] if programs is None else programs.findall(q("DERProgram")):
                if href(program, "DefaultDERControlLink"):
                    await self.get(href(program, "DefaultDERControlLink") or "")
                derc = href(program, "DERControlListLink") or ""
                await self.subscribe(edev_href, derc)
                controls = await self.get(derc + "?l=255")
                for control in [] if controls is None else controls.findall(q("DERControl")):
                    base = control.find(q("DERControlBase"))
                    for mode in [] if base is None else list(base):
                        curve = mode.get("href")
                        if curve:
                            await self.get(curve)
                    await self.control(control)
        await self.readings(dcap, edev)

    async def subscribe(self, edev_href: str, resource: str) -> None:
        if not self.notify_url or resource in self.subscribed:
            return
        body = (
            f'<Subscription xmlns="{NS}"><subscribedResource>{resource}</subscribedResource>'
            f"<encoding>0</encoding><level>-S1-L1-R1</level><limit>10</limit>"
            f"<notificationURI>{self.notify_url}</notificationURI></Subscription>"
        )
        status, _ = await self.send("POST", edev_href + "/sub", body)
        if status == 201:
            self.subscribed.add(resource)

    async def receiver(self) -> web.AppRunner:
        async def notify(request: web.Request) -> web.Response:
            await request.read()
            self.wake.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/notify", notify)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.args.ca)
        context.load_cert_chain(self.args.receiver_cert, self.args.receiver_key)
        context.verify_mode = ssl.CERT_REQUIRED
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.notify_url = f"https://localhost:{runner.addresses[0][1]}/notify"
        return runner

    async def documents(self, edev: etree._Element) -> None:
        post_rate = text(edev, "postRate")
        self.post_rate = float(post_rate) if post_rate else 300.0
        if self.documents_done:
            return
        self.documents_done = True
        ders = await self.get(href(edev, "DERListLink") or "")
        if ders is None or not ders.findall(q("DER")):
            return
        status = href(ders.findall(q("DER"))[0], "DERStatusLink")
        if status:
            body = (
                f'<DERStatus xmlns="{NS}"><operationalModeStatus><dateTime>{int(self.now())}'
                "</dateTime><value>2</value></operationalModeStatus>"
                f"<readingTime>{int(self.now())}</readingTime></DERStatus>"
            )
            await self.send("PUT", status, body)

    async def readings(self, dcap: etree._Element, edev: etree._Element) -> None:
        mup_list = href(dcap, "MirrorUsagePointListLink")
        if not mup_list or time.time() - self.last_post < self.post_rate:
            return
        self.last_post = time.time()
        tail = re.sub("[^0-9A-F]", "", self.args.lfdi.upper())[-8:]
        reading = (
            f"<MirrorMeterReading><mRID>B{tail}{'0' * 15}00009C40</mRID><description>W"
            f"</description><Reading><timePeriod><duration>1</duration><start>{int(time.time())}"
            f"</start></timePeriod><value>{1000 + int(time.time()) % 100}</value></Reading>"
            "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><commodity>1</commodity>"
            "<dataQualifier>2</dataQualifier><flowDirection>1</flowDirection><kind>37</kind>"
            "<phase>0</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom>"
            "</ReadingType></MirrorMeterReading>"
        )
        if self.mup is None:
            body = (
                f'<MirrorUsagePoint xmlns="{NS}"><mRID>A{tail}{"0" * 15}00009C40</mRID>'
                "<description>site</description><roleFlags>49</roleFlags>"
                "<serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
                f"<deviceLFDI>{self.args.lfdi}</deviceLFDI>{reading}</MirrorUsagePoint>"
            )
            status, location = await self.send("POST", mup_list, body)
            if status in (201, 204) and location:
                self.mup = "/" + location.split("/", 3)[-1] if "://" in location else location
            return
        single = reading.replace("<MirrorMeterReading>", f'<MirrorMeterReading xmlns="{NS}">', 1)
        await self.send("POST", self.mup, single)

    async def run(self) -> None:
        deadline = time.monotonic() + self.args.lifetime
        runner = await self.receiver() if self.args.receiver_cert else None
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError, etree.XMLSyntaxError, OSError):
                    await self.walk()
                self.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.args.poll)
        finally:
            await self.session.close()
            if runner is not None:
                await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--lfdi", required=True)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--lifetime", type=float, default=300.0)
    parser.add_argument("--fault", default="")
    parser.add_argument("--receiver-cert", default="")
    parser.add_argument("--receiver-key", default="")
    asyncio.run(Device(parser.parse_args()).run())


if __name__ == "__main__":
    main()
