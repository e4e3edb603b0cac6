"""The fast lane: an unchanged poll answered by writing ready bytes, in front of aiohttp.

Most 2030.5 traffic is a device or an aggregator polling a resource that has not changed.
The render cache already holds its body; what is left per poll is the HTTP framework
(request and response objects, routing, the handler's coroutines), about two thirds of the
CPU. So the 2030.5 listener's connection protocol (`FastLaneHandler`) looks at each request
first:

- a GET or HEAD, HTTP/1.1 or 1.0, with no body, no Expect, no Upgrade and nothing unusual
  in its headers (llhttp through httptools parses it), whose whole answer is known for this
  connection's identity and request target, is answered by writing status line, headers and
  body to the transport;
- everything else (writes, misses, errors, a request split over two reads, anything
  unusual) goes to the aiohttp app, byte for byte as it arrived, and the connection stays
  with the app until the app is idle again at a request boundary (pipelined requests are
  answered in order: the lane never writes while the app has a request in hand).

Where answers come from: the slow lane teaches them. A route wrapped with
`sep2_common.cached` runs its handler with `services.cache.READS` collecting every render
cache entry the handler read or stored; a 200 answer is remembered under (LFDI, request
target) together with the principal it was computed for and those entries. An answer is
served only while every one of its entries is still the very object in the render cache
(and not past its clock boundary) and the principal is still the admitted one, so the fast
lane sees exactly what the slow lane would: a write drops entries by tag, a deny-listed
certificate drops its principal, a poll-rate change drops every entry tagged with the
settings, a clock boundary expires the entries that carry it. A foreign href was never
answered with 200 for this identity, so it is a miss and gets the app's 404.

The answer's bytes are what aiohttp writes for the same response (the equivalence test in
tests/integration/test_fast_lane.py compares them for every cacheable resource): the Date
header is aiohttp's own per-second string, `Server: csip`, and Connection as aiohttp sets
it for the request's version and keep-alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import httptools
from aiohttp import helpers

from csip.domain.devices import Principal
from csip.metrics import Metrics
from csip.services.cache import Entry, RenderCache
from csip.services.sep2 import Sep2Service
from csip.web.identity import IdentityResolver
from csip.web.limits import SERVER_HEADER, GuardedHandler

#: A request longer than this goes to the app (which applies its own line and field limits).
MAX_REQUEST = 4096
#: Headers after which a request is the app's: it has a body, or asks for something.
_REFUSED = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"te", b"trailer"}
)
_HEAD_END = b"\r\n\r\n"
#: Header fields after which a request is the app's (aiohttp refuses more than 128).
MAX_FIELDS = 64


@dataclass
class LaneStats:
    """What the lane did (the render cache's stats.fast_lane counts its answers too)."""

    #: Requests answered by the fast lane.
    answered: int = 0
    #: Requests (or pieces of the stream) handed to the app.
    passed: int = 0
    #: Answers learnt from the app.
    learnt: int = 0


class Answer:
    """One 200 answer for one identity and request target, and what it depends on."""

    __slots__ = ("body", "counter", "expires_at", "fields", "principal", "reads")

    def __init__(
        self,
        principal: Principal,
        reads: tuple[tuple[Hashable, Entry], ...],
        body: bytes,
        content_type: str,
        counter: Any = None,
    ) -> None:
        self.principal = principal
        #: csip_http_requests_total's child for this answer's route and 200 (or None).
        self.counter = counter
        self.reads = reads
        self.body = body
        expiries = [e.expires_at for _, e in reads if e.expires_at is not None]
        self.expires_at = min(expiries) if expiries else None
        #: The header fields before Date, as aiohttp orders them.
        self.fields = (
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nDate: "
        ).encode("latin-1")


_STATUS = {True: b"HTTP/1.0 200 OK\r\n", False: b"HTTP/1.1 200 OK\r\n"}
_SERVER = f"\r\nServer: {SERVER_HEADER}\r\n".encode()
#: (HTTP/1.0, keep-alive) -> the Connection field aiohttp adds.
_CONNECTION = {
    (False, True): b"\r\n",
    (False, False): b"Connection: close\r\n\r\n",
    (True, True): b"Connection: keep-alive\r\n\r\n",
    (True, False): b"\r\n",
}


class FastLane:
    """The answers one 2030.5 app has taught, checked against its render cache."""

    def __init__(
        self, service: Sep2Service, identity: IdentityResolver, metrics: Metrics | None = None
    ) -> None:
        self.cache: RenderCache = service.cache
        self.metrics = metrics
        #: lfdi -> when it last made a request (time.monotonic), for csip_sep2_clients_seen.
        self.seen: dict[str, float] = metrics.seen_clients if metrics is not None else {}
        self.ready_principal = service.ready_principal
        self.identity = identity
        #: Bounds like the render cache's: an answer keeps its entries' bodies alive even
        #: after the cache dropped them (until it is looked up again or evicted).
        self.max_answers = service.settings.cache_max_entries
        self.max_bytes = service.settings.cache_max_bytes
        self.answers: dict[tuple[str, bytes], Answer] = {}
        #: Bytes of the bodies the answers hold (each counted once per answer).
        self.size = 0
        #: Off: every request goes to the app (tests compare the lanes this way).
        self.enabled = bool(service.settings.fast_lane)
        self.stats = LaneStats()
        self._date = ""
        self._date_bytes = b""

    # ---- learning (the slow lane) -------------------------------------------------
    def learn(
        self,
        principal: Principal,
        target: str,
        reads: list[tuple[Hashable, Entry]],
        body: bytes,
        content_type: str,
        route: str = "",
    ) -> None:
        """Remember a 200 answer the app gave, if everything it read is still cached.
        `route`: the route's pattern, the label its fast-lane answers are counted under."""
        if not reads or not self.enabled or self.ready_principal(principal.lfdi) is not principal:
            return
        if not target.isascii() or len(target) > MAX_REQUEST:
            return
        entries = self.cache.entries
        if any(entries.get(key) is not entry for key, entry in reads):
            return  # not stored (a page rendered per request) or already replaced
        answers = self.answers
        key = (principal.lfdi, target.encode("ascii"))
        self._forget(key)
        if len(answers) >= self.max_answers or self.size + len(body) > self.max_bytes:
            for oldest in list(answers)[: max(1, len(answers) // 10)]:
                self._forget(oldest)
        metrics = self.metrics
        counter = metrics.answer_counter("sep2", route) if metrics is not None else None
        answers[key] = Answer(principal, tuple(reads), body, content_type, counter)
        self.size += len(body)
        self.stats.learnt += 1

    def _forget(self, key: tuple[str, bytes]) -> None:
        answer = self.answers.pop(key, None)
        if answer is not None:
            self.size -= len(answer.body)

    # ---- answering ----------------------------------------------------------------
    def lookup(self, lfdi: str, target: bytes) -> Answer | None:
        """The answer for this identity and target if it is still what the app would say."""
        key = (lfdi, target)
        answer = self.answers.get(key)
        if answer is None:
            return None
        if self.ready_principal(lfdi) is answer.principal and self._current(answer):
            return answer
        self._forget(key)
        return None

    def _current(self, answer: Answer) -> bool:
        cache = self.cache
        if answer.expires_at is not None and cache.now() >= answer.expires_at:
            return False
        entries = cache.entries
        for key, entry in answer.reads:  # noqa: SIM110 - a loop: all() costs a generator
            if entries.get(key) is not entry:
                return False
        return True

    def wire(self, answer: Answer, http10: bool, keep_alive: bool, head: bool) -> bytes:
        """The bytes aiohttp would write for this answer."""
        date = helpers.rfc822_formatted_time()  # aiohttp's own, cached per second
        if date is not self._date:
            self._date, self._date_bytes = date, date.encode("latin-1")
        parts = [
            _STATUS[http10],
            answer.fields,
            self._date_bytes,
            _SERVER,
            _CONNECTION[(http10, keep_alive)],
        ]
        if not head:
            parts.append(answer.body)
        return b"".join(parts)


class _Requests:
    """httptools callbacks: where requests begin and end, and whether one is plain."""

    __slots__ = (
        "begun",
        "close",
        "completed",
        "hosts",
        "keep_alive",
        "names",
        "parser",
        "plain",
        "target",
    )

    def __init__(self) -> None:
        self.begun = 0
        self.completed = 0
        self.target = b""
        self.plain = True
        self.close = False
        self.hosts = 0
        self.keep_alive = False
        self.names: set[bytes] = set()
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self.begun += 1
        self.target = b""
        self.plain = True
        self.close = False
        self.hosts = 0
        self.names = set()

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        names = self.names
        if lower in names or lower in _REFUSED or b"\x00" in value or len(names) >= MAX_FIELDS:
            self.plain = False  # a repeated field (aiohttp refuses some), a body, a wish
        names.add(lower)
        if lower == b"host":
            self.hosts += 1
        elif lower == b"connection":
            token = value.strip(b" \t").lower()
            if token == b"close":
                self.close = True
            elif token != b"keep-alive":
                self.plain = False

    def on_headers_complete(self) -> None:
        # llhttp knows it only until the message ends
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.completed += 1


class FastLaneHandler(GuardedHandler):
    """The 2030.5 listener's connection protocol: the fast lane, then aiohttp."""

    __slots__ = ("_lane", "_lane_parser", "_lfdi", "_requests", "_slow")

    def __init__(self, manager: Any, *, lane: FastLane, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._lane: FastLane | None = lane if lane.enabled else None
        #: The connection's identity (None until its first request).
        self._lfdi: str | None = None
        self._requests = _Requests()
        self._lane_parser: Any = None
        #: The app has (or may have) part of the stream: everything goes to it for now.
        self._slow = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        lane = self._lane
        if lane is None or self.transport is None:
            self._lane = None
            return
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if lane.identity.trusted_proxy(host):
            self._lane = None  # identity per request, from a header: the app's job
            return
        self._lane_parser = httptools.HttpRequestParser(self._requests)
        self._requests.parser = self._lane_parser

    def data_received(self, data: bytes) -> None:
        lane = self._lane
        if lane is None or self._force_close or self._close or self.transport is None:
            super().data_received(data)
            return
        requests = self._requests
        if self._slow:
            waiter = self._waiter
            if (
                requests.begun == requests.completed
                and waiter is not None
                and not waiter.done()
                and not self._messages
            ):
                self._slow = False  # the app is idle at a request boundary: back to the lane
            else:
                self._pass(data, 0)
                return
        if not lane.enabled or self.writing_paused:
            self._pass(data, 0)
            return
        lfdi = self._lfdi
        if lfdi is None:
            identity = lane.identity.of_transport(self.transport)
            if identity is None or identity.problems:
                self._lane = None  # 403 on every request: the app's answer
                super().data_received(data)
                return
            lfdi = self._lfdi = identity.lfdi
        # A read is answered here whole or not at all: aiohttp parses a read in one go and
        # answers a single 400 for all of it when any part is malformed (or follows a
        # closing request), so a read holding anything this lane does not answer goes to
        # the app as it came.
        parser = self._lane_parser
        out: list[bytes] = []
        position, size = 0, len(data)
        keep_alive = True
        while position < size:
            end = data.find(_HEAD_END, position, position + MAX_REQUEST)
            if end < 0 or not keep_alive:
                self._pass(data, position)  # a request in pieces, or bytes after a close
                return
            end += 4
            before = requests.completed
            try:
                parser.feed_data(data[position:end])
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self._lane = None  # malformed, or a protocol switch: the app's answer
                super().data_received(data)
                return
            if requests.completed != before + 1 or requests.begun != requests.completed:
                self._pass(data, end)  # a body, or not where llhttp ends the request
                return
            method = parser.get_method()
            version = parser.get_http_version()
            http10 = version == "1.0"
            if (
                not requests.plain
                or (method != b"GET" and method != b"HEAD")
                or (not http10 and (version != "1.1" or requests.hosts != 1))
            ):
                self._pass(data, end)
                return
            answer = lane.lookup(lfdi, requests.target)
            if answer is None:
                self._pass(data, end)
                return
            keep_alive = requests.keep_alive and not requests.close
            out.append(lane.wire(answer, http10, keep_alive, method == b"HEAD"))
            counter = answer.counter
            if counter is not None:
                counter.inc()
            position = end
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        lane.stats.answered += len(out)
        lane.cache.stats.fast_lane += len(out)
        now = self._loop.time()  # the monotonic clock
        lane.seen[lfdi] = now
        if not keep_alive:
            self.force_close()  # aiohttp's own ending: the transport flushes, then closes
        elif self._keepalive_timeout:
            self._next_keepalive_close_time = now + self._keepalive_timeout

    def _pass(self, data: bytes, parsed: int) -> None:
        """Hand the whole read to the app; the lane's parser, which has seen data[:parsed],
        follows the rest to know where the app's requests end."""
        assert self._lane is not None
        self._lane.stats.passed += 1
        self._slow = True
        if parsed < len(data):
            try:
                self._lane_parser.feed_data(data[parsed:] if parsed else data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self._lane = None  # the stream is the app's from now on
        super().data_received(data)
