"""What the harness records: every exchange of a device under test with the test server.

An `Exchange` is one HTTP request the device made (and the answer it got), or one
notification the server sent it (and the device's answer). The `Recorder` keeps them per
certificate LFDI; it is attached to csip's 2030.5 app only when the harness runs
(`attach`), so a normal server pays nothing for it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Bodies kept per exchange (enough to read in a report, bounded in memory).
BODY_LIMIT = 4096

_ROUTES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), method, kind)
    for pattern, method, kind in (
        (r"/dcap", "*", "DeviceCapability"),
        (r"/tm", "*", "Time"),
        (r"/edev", "*", "EndDeviceList"),
        (r"/edev/\d+", "*", "EndDevice"),
        (r"/edev/\d+/rg", "*", "Registration"),
        (r"/edev/\d+/di", "*", "DeviceInformation"),
        (r"/edev/\d+/dstat", "*", "DeviceStatus"),
        (r"/edev/\d+/ps", "*", "PowerStatus"),
        (r"/edev/\d+/fsa", "*", "FunctionSetAssignmentsList"),
        (r"/fsa/\d+", "*", "FunctionSetAssignments"),
        (r"/fsa/\d+/derp", "*", "DERProgramList"),
        (r"/derp/\d+", "*", "DERProgram"),
        (r"/derp/\d+/derc", "*", "DERControlList"),
        (r"/derp/\d+/derc/\d+", "*", "DERControl"),
        (r"/derp/\d+/actderc", "*", "ActiveDERControlList"),
        (r"/derp/\d+/dderc", "*", "DefaultDERControl"),
        (r"/derp/\d+/dc", "*", "DERCurveList"),
        (r"/derp/\d+/dc/\d+", "*", "DERCurve"),
        (r"/rsps", "*", "ResponseSetList"),
        (r"/rsps/\d+/rsp", "*", "Response"),
        (r"/edev/\d+/sub", "POST", "Subscription"),
        (r"/edev/\d+/sub", "*", "SubscriptionList"),
        (r"/edev/\d+/sub/\d+", "*", "Subscription"),
        (r"/edev/\d+/der", "*", "DERList"),
        (r"/edev/\d+/der/\d+", "*", "DER"),
        (r"/edev/\d+/der/\d+/dercap", "*", "DERCapability"),
        (r"/edev/\d+/der/\d+/derg", "*", "DERSettings"),
        (r"/edev/\d+/der/\d+/ders", "*", "DERStatus"),
        (r"/edev/\d+/der/\d+/dera", "*", "DERAvailability"),
        (r"/edev/\d+/cp", "*", "ConnectionPoint"),
        (r"/edev/\d+/lel", "POST", "LogEvent"),
        (r"/edev/\d+/lel", "*", "LogEventList"),
        (r"/edev/\d+/lel/\d+", "*", "LogEvent"),
        (r"/mup", "POST", "MirrorUsagePoint"),
        (r"/mup", "*", "MirrorUsagePointList"),
        (r"/mup/\d+", "POST", "MirrorMeterReading"),
        (r"/mup/\d+", "*", "MirrorUsagePoint"),
    )
)


def classify(method: str, path: str) -> str:
    """The 2030.5 resource a request is about, from csip's paths (sep2 hrefs)."""
    for pattern, wanted, kind in _ROUTES:
        if (wanted == "*" or wanted == method) and pattern.fullmatch(path):
            return kind
    return "Other"


_SUBJECT = re.compile(rb"<(?:\w+:)?subject>\s*([0-9A-Fa-f]+)\s*</")
_STATUS = re.compile(rb"<(?:\w+:)?status>\s*(\d+)\s*</")
_MRID = re.compile(rb"<(?:\w+:)?mRID>\s*([0-9A-Fa-f]+)\s*</")


def _text(body: bytes) -> str:
    text = body[:BODY_LIMIT].decode("utf-8", "replace")
    return text + ("\n... (truncated)" if len(body) > BODY_LIMIT else "")


@dataclass
class Exchange:
    """One request by the device (direction "request") or one notification to it."""

    t: float
    lfdi: str
    direction: str
    method: str
    path: str
    resource: str
    status: int
    query: str = ""
    request_body: str = ""
    response_body: str = ""
    #: Response POSTs: the control's mRID and the Response status code
    subject: str = ""
    response_status: int | None = None
    #: mRIDs named in a notification or an answer (to match controls)
    mrids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Exchange:
        return cls(**data)

    def line(self, t0: float = 0.0) -> str:
        extra = ""
        if self.response_status is not None:
            extra = f" status={self.response_status} subject={self.subject}"
        arrow = "->" if self.direction == "request" else "<- notification"
        return (
            f"+{self.t - t0:7.2f}s {arrow} {self.method} {self.path}"
            f"{'?' + self.query if self.query else ''} [{self.resource}] {self.status}{extra}"
        )


def exchange(
    lfdi: str,
    direction: str,
    method: str,
    path: str,
    status: int,
    request_body: bytes,
    response_body: bytes,
    query: str = "",
    resource: str | None = None,
    t: float | None = None,
) -> Exchange:
    record = Exchange(
        t=time.time() if t is None else t,
        lfdi=lfdi.lower(),
        direction=direction,
        method=method,
        path=path,
        resource=resource or classify(method, path),
        status=status,
        query=query,
        request_body=_text(request_body),
        response_body=_text(response_body),
    )
    if record.resource == "Response" and method == "POST":
        subject, code = _SUBJECT.search(request_body), _STATUS.search(request_body)
        record.subject = subject.group(1).decode().upper() if subject else ""
        record.response_status = int(code.group(1)) if code else None
    mrids = {m.decode().upper() for m in _MRID.findall(response_body if method == "GET" else b"")}
    if direction == "notification":
        mrids |= {m.decode().upper() for m in _MRID.findall(request_body)}
    record.mrids = sorted(mrids)
    return record


Listener = Callable[[Exchange], None]


@dataclass
class Recorder:
    """Exchanges per LFDI, and listeners told of each new one (the progress display)."""

    by_lfdi: dict[str, list[Exchange]] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    #: notification URL -> LFDI, learnt from the devices' own Subscription POSTs
    notify_targets: dict[str, str] = field(default_factory=dict)
    #: LFDI -> real time until which notifications to it are refused (held back)
    held_until: dict[str, float] = field(default_factory=dict)

    def add(self, record: Exchange) -> None:
        self.by_lfdi.setdefault(record.lfdi, []).append(record)
        if record.resource == "Subscription" and record.method == "POST":
            match = re.search(r"<(?:\w+:)?notificationURI>\s*([^<\s]+)\s*<", record.request_body)
            if match:
                self.notify_targets[match.group(1)] = record.lfdi
        for listener in self.listeners:
            listener(record)

    def of(self, lfdi: str, since: float = 0.0) -> list[Exchange]:
        return [e for e in self.by_lfdi.get(lfdi.lower(), []) if e.t >= since]

    # ---- attaching to csip's 2030.5 app -------------------------------------------------
    def attach(self, app: Any) -> None:
        """Record every 2030.5 exchange of `app` (an aiohttp Application before it starts):
        one on_response_prepare handler, added only when a harness asks for it."""
        from csip.web.sep2_common import IDENTITY

        async def on_prepare(request: Any, response: Any) -> None:
            identity = request.app[IDENTITY].resolve(request)
            if identity is None:
                return
            body = await request.read() if request.body_exists else b""
            answer = getattr(response, "body", None)
            self.add(
                exchange(
                    identity.lfdi,
                    "request",
                    request.method,
                    request.path,
                    response.status,
                    body,
                    answer if isinstance(answer, bytes) else b"",
                    request.query_string,
                )
            )

        app.on_response_prepare.append(on_prepare)

    def wrap_sender(
        self, sender: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        """Wrap csip's 2030.5 notification sender: record each delivery, and refuse the
        ones to a device whose notifications are held back (the outbox retries them)."""

        async def send(message: Any) -> None:
            lfdi = self._lfdi_of(message)
            if lfdi and self.held_until.get(lfdi, 0.0) > time.time():
                self.add(
                    exchange(
                        lfdi,
                        "notification",
                        "POST",
                        message.target,
                        0,
                        b"",
                        b"",
                        "",
                        "Notification",
                    )
                )
                raise ConnectionRefusedError("held back by the conformance harness")
            status = 204
            try:
                await sender(message)
            except Exception as exc:
                status = _status_of(exc)
                raise
            finally:
                if lfdi:
                    self.add(
                        exchange(
                            lfdi,
                            "notification",
                            "POST",
                            message.target,
                            status,
                            message.body,
                            b"",
                            resource="Notification",
                        )
                    )

        return send

    def _lfdi_of(self, message: Any) -> str:
        try:
            intent = json.loads(message.body)
            return str(intent["lfdi"]).lower()
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return self.notify_targets.get(message.target, "")


def _status_of(exc: BaseException) -> int:
    match = re.search(r"\b([1-5]\d\d)\b", str(exc))
    return int(match.group(1)) if match else 0
