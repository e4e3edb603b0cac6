"""The fast lane: an unchanged poll answered by writing ready bytes, in front of aiohttp.

Most 2030.5 traffic is a device or an aggregator polling a resource that has not changed.
The render cache already holds its body; what is left per poll is the HTTP framework
(request and response objects, routing, the handler's coroutines), about two thirds of the
CPU. So the 2030.5 listener's connection protocol (`FastLaneProtocol`) looks at each request
first, and makes aiohttp's per-connection handler only when a request needs the app (a
device that only polls never costs one):

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

What a request head says is parsed once: the lane remembers, by the head's exact bytes,
the heads it could answer (target, version, keep-alive, HEAD), so a client repeating its
poll skips the parser (two generations, bounded in bytes); a head not remembered whole is
read as a strict request line plus a header block remembered per client (`read_head`), and
only what neither covers goes through llhttp. An answer's dependencies are
re-checked only when the render cache has dropped something since they were last found
current (`RenderCache.dropped`).

The answer's bytes are what aiohttp writes for the same response (the equivalence test in
tests/integration/test_fast_lane.py compares them for every cacheable resource): the Date
header is aiohttp's own per-second string, `Server: csip`, and Connection as aiohttp sets
it for the request's version and keep-alive.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast

import httptools
from aiohttp import helpers

from csip.domain.devices import Principal
from csip.metrics import Metrics
from csip.services.cache import Entry, RenderCache
from csip.services.sep2 import Sep2Service
from csip.web import observe
from csip.web.identity import IdentityResolver
from csip.web.limits import SERVER_HEADER, GuardedHandler, GuardedServer, LightProtocol

#: A request longer than this goes to the app (which applies its own line and field limits).
MAX_REQUEST = 4096
#: Headers after which a request is the app's: it has a body, or asks for something.
_REFUSED = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"te", b"trailer"}
)
_HEAD_END = b"\r\n\r\n"
#: Header fields after which a request is the app's (aiohttp refuses more than 128).
MAX_FIELDS = 64
#: Bytes of remembered request heads per generation (each head's length plus HEAD_COST);
#: two generations are kept, so at most twice this.
HEADS_BYTES = 4 * 1024 * 1024
#: What one remembered head costs besides its bytes (its dict slot, tuple, target).
HEAD_COST = 200

#: A request head the lane can answer: (target, HTTP/1.0, keep-alive, HEAD).
Head = tuple[bytes, bool, bool, bool]
#: A request line llhttp reads as exactly these parts (a strict subset of what it accepts:
#: anything else is read by the parser itself).
_LINE = re.compile(rb"(GET|HEAD) (/[A-Za-z0-9/._~?=&%+,:;@!$*'()-]*) HTTP/1\.([01])")
#: Distinct header blocks remembered; past it the memo starts again.
MAX_BLOCKS = 4096


def _read_block(block: bytes) -> tuple[bool, bool, bool, bool]:
    """What llhttp says of a header block (starting with the request line's CRLF, ending
    with the blank line) after a plain request line: (nothing unusual, exactly one Host,
    Connection: close, Connection: keep-alive). Header fields are read the same whatever
    GET/HEAD line and HTTP/1.x version precede them; the version only decides keep-alive."""
    requests = _Requests()
    parser = requests.parser = httptools.HttpRequestParser(requests)
    try:
        parser.feed_data(b"GET / HTTP/1.1" + block)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return (False, False, False, False)
    if requests.begun != 1 or requests.completed != 1:
        return (False, False, False, False)
    return (requests.plain, requests.hosts == 1, requests.close, requests.keep_alive_token)


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

    __slots__ = ("body", "checked", "expires_at", "fields", "principal", "reads", "route", "tally")

    def __init__(
        self,
        principal: Principal,
        reads: tuple[tuple[Hashable, Entry], ...],
        body: bytes,
        content_type: str,
        tally: list[int] | None = None,
        checked: int = -1,
        route: str = "",
    ) -> None:
        self.principal = principal
        #: The route's pattern (its label in metrics and access lines).
        self.route = route
        #: The count of this answer's route and 200 in csip_http_requests_total (or None).
        self.tally = tally
        self.reads = reads
        #: RenderCache.dropped when the reads were last found current.
        self.checked = checked
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
        #: One access line per answer too (`access_log`), as the app writes per request.
        self.access = bool(service.settings.access_log)
        self.stats = LaneStats()
        self._date = ""
        self._date_bytes = b""
        #: Request heads the lane can answer, by their exact bytes (this generation, the
        #: one before, the bytes this one holds).
        self._heads: dict[bytes, Head] = {}
        self._heads_before: dict[bytes, Head] = {}
        self._heads_size = 0
        #: Header blocks (from the request line's CRLF to the blank line) -> what the
        #: parser said of them: (plain, one Host, Connection: close, Connection: keep-alive).
        self._blocks: dict[bytes, tuple[bool, bool, bool, bool]] = {}

    def protocol(self, server: GuardedServer) -> LightProtocol:
        """The listener's protocol factory (limits.PROTOCOL): one per connection."""
        return FastLaneProtocol(server, lane=self)

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
        tally = metrics.tally("sep2", route) if metrics is not None else None
        answers[key] = Answer(
            principal, tuple(reads), body, content_type, tally, self.cache.dropped, route
        )
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
        dropped = cache.dropped
        if answer.checked == dropped:
            return True  # nothing left the cache since the reads were found current
        entries = cache.entries
        for key, entry in answer.reads:
            if entries.get(key) is not entry:
                return False
        answer.checked = dropped
        return True

    # ---- request heads --------------------------------------------------------------
    def head(self, raw: bytes) -> Head | None:
        """What an answerable request head said when the parser last read these bytes."""
        head = self._heads.get(raw)
        if head is None:
            head = self._heads_before.get(raw)
            if head is not None:
                self.remember(raw, head)
        return head

    def read_head(self, raw: bytes) -> Head | None:
        """A head not remembered whole (an aggregator walking more targets than the memo
        holds): its request line read by a pattern that admits only what llhttp reads the
        same way (GET or HEAD, a target of plain URL characters, HTTP/1.1 or 1.0), its
        header block by what the parser said of the same bytes before (one entry per
        client's way of asking, not per target). None: the parser must read it."""
        line_end = raw.find(b"\r\n")
        match = _LINE.fullmatch(raw, 0, line_end)
        if match is None:
            return None
        block = raw[line_end:]
        verdict = self._blocks.get(block)
        if verdict is None:
            verdict = _read_block(block)
            if len(self._blocks) >= MAX_BLOCKS:
                self._blocks.clear()
            self._blocks[block] = verdict
        plain, one_host, close, keep_alive_token = verdict
        http10 = match.group(3) == b"0"
        if not plain or not (http10 or one_host):
            return None
        keep_alive = not close and (keep_alive_token or not http10)
        head = (match.group(2), http10, keep_alive, match.group(1) == b"HEAD")
        self.remember(raw, head)
        return head

    def remember(self, raw: bytes, head: Head) -> None:
        cost = len(raw) + len(head[0]) + HEAD_COST
        if self._heads_size + cost > HEADS_BYTES:
            self._heads_before, self._heads, self._heads_size = self._heads, {}, 0
        self._heads[raw] = head
        self._heads_size += cost

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
        "keep_alive_token",
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
        self.keep_alive_token = False
        self.names: set[bytes] = set()
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self.begun += 1
        self.target = b""
        self.plain = True
        self.close = False
        self.keep_alive_token = False
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
            elif token == b"keep-alive":
                self.keep_alive_token = True
            else:
                self.plain = False

    def on_headers_complete(self) -> None:
        # llhttp knows it only until the message ends
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.completed += 1


class FastLaneProtocol(LightProtocol):
    """The 2030.5 listener's connection protocol: the fast lane, then aiohttp's handler,
    made (and adopted to this transport) only when a request needs the app."""

    __slots__ = (
        "_app",
        "_client",
        "_closing",
        "_idle_at",
        "_idle_handle",
        "_lane",
        "_lfdi",
        "_loop",
        "_parser",
        "_paused",
        "_requests",
        "_server",
        "_slow",
        "transport",
    )

    def __init__(self, server: GuardedServer, *, lane: FastLane) -> None:
        self._server = server
        self._loop = server._loop
        self._lane: FastLane | None = lane
        #: aiohttp's handler for this connection, once a request needed the app.
        self._app: GuardedHandler | None = None
        self.transport: asyncio.Transport | None = None
        #: The caps' key for this connection (None: not admitted, or released).
        self._client: str | None = None
        #: The connection's identity (None until its first request).
        self._lfdi: str | None = None
        self._requests = _Requests()
        self._parser: Any = None
        #: The app has (or may have) part of the stream: everything goes to it for now.
        self._slow = False
        self._paused = False
        #: Closed (or closing) by the lane: nothing more is read.
        self._closing = False
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_at = 0.0

    # ---- the connection ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        guard = server.guard
        tcp = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        client = guard.admit(host)
        if client is None:
            tcp.write(guard.busy)
            tcp.close()
            self._closing = True
            return
        self._client = client
        self.transport = tcp
        server.light.add(self)
        lane = self._lane
        assert lane is not None
        if not lane.enabled or lane.identity.trusted_proxy(host):
            # off, or identity per request from a proxy's header: the app's job
            self._lane = None
            self._hand_over()
            return
        timeout = server.keepalive_timeout
        if timeout > 0:  # a connection that never sends a request is closed like aiohttp's
            self._idle_at = self._loop.time() + timeout
            self._idle_handle = self._loop.call_at(self._idle_at, self._idle)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is not None:
            self._server.guard.release(self._client)
            self._client = None
        self._server.light.discard(self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.transport = None
        self._closing = True
        app = self._app
        if app is not None:
            app.connection_lost(exc)

    def eof_received(self) -> None:
        if self._app is not None:
            self._app.eof_received()

    def pause_writing(self) -> None:
        self._paused = True
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if self._app is not None:
            self._app.resume_writing()

    def close_idle(self) -> None:
        """Shutdown: a connection the app never had is idle between requests (the lane
        answers whole reads at once); the app's handler closes its own."""
        if self._app is None and self.transport is not None:
            self._closing = True
            self.transport.close()

    def _idle(self) -> None:
        """aiohttp's keep-alive timeout, while the app has no handler for the connection."""
        self._idle_handle = None
        if self._app is not None or self.transport is None or self._closing:
            return
        if self._loop.time() < self._idle_at:
            self._idle_handle = self._loop.call_at(self._idle_at, self._idle)
            return
        self.close_idle()

    def _hand_over(self) -> GuardedHandler:
        """Make aiohttp's handler and give it this connection (its keep-alive timer, its
        request task); from now on it is in `server.connections` too."""
        app = self._app = self._server.handler()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        assert self.transport is not None
        app.adopt(self.transport)
        if self._paused:
            app.pause_writing()
        return app

    # ---- requests ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        app = self._app
        lane = self._lane
        if lane is None:
            if app is not None:
                app.data_received(data)
            return
        if app is not None:
            if app._force_close or app._close or app.transport is None:
                app.data_received(data)  # the app is ending the connection: it drops them
                return
            if self._slow:
                requests = self._requests
                waiter = app._waiter
                if (
                    requests.begun == requests.completed
                    and waiter is not None
                    and not waiter.done()
                    and not app._messages
                ):
                    self._slow = False  # the app is idle at a request boundary: the lane's
                else:
                    self._pass(data, 0)
                    return
        if not lane.enabled or self._paused:
            self._pass(data, 0)
            return
        lfdi = self._lfdi
        transport = self.transport
        assert transport is not None
        if lfdi is None:
            identity = lane.identity.of_transport(transport)
            if identity is None or identity.problems:
                self._lane = None  # 403 on every request: the app's answer
                (app or self._hand_over()).data_received(data)
                return
            lfdi = self._lfdi = identity.lfdi
        # A read is answered here whole or not at all: aiohttp parses a read in one go and
        # answers a single 400 for all of it when any part is malformed (or follows a
        # closing request), so a read holding anything this lane does not answer goes to
        # the app as it came.
        out: list[bytes] = []
        done: list[Answer] = []
        logged: list[tuple[str, bytes, str]] | None = None
        if lane.access:
            logged, started = [], self._loop.time()
        heads = lane._heads
        position, size = 0, len(data)
        keep_alive = True
        while position < size:
            end = data.find(_HEAD_END, position, position + MAX_REQUEST)
            if end < 0 or not keep_alive:
                self._pass(data, position)  # a request in pieces, or bytes after a close
                return
            end += 4
            raw = data if end == size and not position else data[position:end]
            head = heads.get(raw)  # the usual poll: these very bytes were read before
            if head is None:
                head = lane.head(raw) or lane.read_head(raw)
            if head is None:
                try:
                    head = self._parse(raw)
                except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                    self._lane = None  # malformed, or a protocol switch: the app's answer
                    (app or self._hand_over()).data_received(data)
                    return
                if head is None:
                    self._pass(data, end)  # a body, or anything the lane does not answer
                    return
            target, http10, keep_alive, bare = head
            answer = lane.lookup(lfdi, target)
            if answer is None:
                self._pass(data, end)
                return
            out.append(lane.wire(answer, http10, keep_alive, bare))
            done.append(answer)
            if logged is not None:
                logged.append(("HEAD" if bare else "GET", target, answer.route))
            position = end
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        for answer in done:  # counted only now: a read the app took is counted by the app
            tally = answer.tally
            if tally is not None:
                tally[0] += 1
        count = len(out)
        lane.stats.answered += count
        lane.cache.stats.fast_lane += count
        now = self._loop.time()  # the monotonic clock
        lane.seen[lfdi] = now
        if logged:
            self._log(logged, started)
        if not keep_alive:
            # aiohttp's own ending: the transport flushes, then closes
            if app is not None:
                app.force_close()
            else:
                self.close_idle()
            return
        timeout = self._server.keepalive_timeout
        if timeout:
            if app is not None:
                app._next_keepalive_close_time = now + timeout
            else:
                self._idle_at = now + timeout

    def _log(self, answered: list[tuple[str, bytes, str]], started: float) -> None:
        """Access lines for this read's answers (`access_log` on)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        duration = self._loop.time() - started
        for method, target, route in answered:
            observe.fast_line(method, target, route, host, duration)

    def _parse(self, raw: bytes) -> Head | None:
        """Read one request head (the parser is at a request boundary); what it says if
        the lane can answer it (remembered for the next time these bytes come), else None
        (the parser has then read it as the app will)."""
        requests = self._requests
        parser = self._parser
        if parser is None:  # made on the connection's first head the lane has not seen
            parser = self._parser = requests.parser = httptools.HttpRequestParser(requests)
        before = requests.completed
        parser.feed_data(raw)
        if requests.completed != before + 1 or requests.begun != requests.completed:
            return None  # a body follows, or llhttp ends the request elsewhere
        method = parser.get_method()
        version = parser.get_http_version()
        http10 = version == "1.0"
        if (
            not requests.plain
            or (method != b"GET" and method != b"HEAD")
            or (not http10 and (version != "1.1" or requests.hosts != 1))
        ):
            return None
        head = (
            requests.target,
            http10,
            requests.keep_alive and not requests.close,
            method == b"HEAD",
        )
        assert self._lane is not None
        self._lane.remember(raw, head)
        return head

    def _pass(self, data: bytes, parsed: int) -> None:
        """Hand the whole read to the app; the lane's parser, which has seen data[:parsed],
        follows the rest to know where the app's requests end."""
        lane = self._lane
        assert lane is not None
        lane.stats.passed += 1
        self._slow = True
        if parsed < len(data):
            requests = self._requests
            if self._parser is None:
                self._parser = requests.parser = httptools.HttpRequestParser(requests)
            try:
                self._parser.feed_data(data[parsed:] if parsed else data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self._lane = None  # the stream is the app's from now on
        (self._app or self._hand_over()).data_received(data)
