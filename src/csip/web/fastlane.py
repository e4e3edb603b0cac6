"""The fast lane: an unchanged poll answered by writing ready bytes, in front of aiohttp.

Most 2030.5 traffic is a device or an aggregator polling a resource that has not changed.
The render cache already holds its body; what is left per poll is the HTTP framework
(request and response objects, routing, the handler's coroutines), about two thirds of the
CPU. So the 2030.5 listener's connection protocol (`FastLaneProtocol`) looks at each request
first, and makes aiohttp's per-connection handler only when a request needs the app (a
device that only polls never costs one):

- a GET or HEAD, HTTP/1.1 or 1.0, with no body, no Expect, no Upgrade and nothing unusual
  in its headers (as llhttp, through httptools, reads them), whose whole answer is known for this
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

What a request head says is read without running the parser where that is safe: a
request line of exactly `GET ` or `HEAD `, a target, ` HTTP/1.1` or ` HTTP/1.0` whose
target is a key the app itself learnt (so llhttp read those very bytes as a target, in a
line of this form, before), and a header block whose verdict llhttp gave before (each
connection keeps its last one, the lane a bounded memo of every client's). Anything else
goes through llhttp. Measured in bench/poll.py against reading every head with llhttp
behind a memo of whole heads: 1 µs less per keep-alive poll, 5 µs less per request of an
aggregator walking 20,000 targets. An answer's dependencies are re-checked only when the
render cache has dropped something since they were last found current
(`RenderCache.dropped`).

Per connection the lane keeps to what a poller needs: one timer of the listener sweeps its
connections for the keep-alive timeout (`GuardedServer.watch`), llhttp is made on first
need, and the certificate's identity stays with the protocol until the connection goes to
the app (`IdentityResolver.remember`).

The answer's bytes are what aiohttp writes for the same response (the equivalence test in
tests/integration/test_fast_lane.py compares them for every cacheable resource): the Date
header is aiohttp's own per-second string, `Server: csip`, and Connection as aiohttp sets
it for the request's version and keep-alive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from time import time as _time
from typing import Any, cast

import httptools
from aiohttp import helpers

from csip.domain.devices import Principal
from csip.metrics import Metrics
from csip.services.cache import Entry, RenderCache
from csip.services.sep2 import Sep2Service
from csip.web import observe
from csip.web.identity import ConnectionIdentity, IdentityResolver
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

#: A request head the lane can answer: (target, HTTP/1.0, keep-alive, HEAD).
Head = tuple[bytes, bool, bool, bool]
#: What a header block allows after an HTTP/1.1 and after an HTTP/1.0 request line:
#: (answerable 1.1, keep-alive 1.1, answerable 1.0, keep-alive 1.0).
Verdict = tuple[bool, bool, bool, bool]
_REFUSE: Verdict = (False, False, False, False)
#: Distinct header blocks remembered; past it the memo starts again.
MAX_BLOCKS = 4096
#: The request line's end when it is plain: its version (9 bytes before the CRLF).
_HTTP11 = b" HTTP/1.1"
_HTTP10 = b" HTTP/1.0"


def _read_block(block: bytes) -> Verdict:
    """What llhttp says of a header block (starting with the request line's CRLF, ending
    with the blank line) after a plain request line. Header fields are read the same
    whatever GET/HEAD line and HTTP/1.x version precede them; the version decides whether
    a Host field is required (1.1) and what keep-alive is by default."""
    requests = _Requests()
    parser = requests.parser = httptools.HttpRequestParser(requests)
    try:
        parser.feed_data(b"GET / HTTP/1.1" + block)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return _REFUSE
    if requests.begun != 1 or requests.completed != 1 or not requests.plain:
        return _REFUSE
    close = requests.close
    return (requests.hosts == 1, not close, True, not close and requests.keep_alive_token)


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

    __slots__ = ("body", "checked", "expires_at", "head", "principal", "reads", "route", "tally")

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
        #: The HTTP/1.1 status line and the header fields before Date, as aiohttp orders
        #: them (an HTTP/1.0 answer swaps the status line).
        self.head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nDate: "
        ).encode("latin-1")


_STATUS_11 = b"HTTP/1.1 200 OK\r\n"
_STATUS_10 = b"HTTP/1.0 200 OK\r\n"
_SERVER = f"\r\nServer: {SERVER_HEADER}\r\n".encode()
#: (HTTP/1.0, keep-alive) -> the Connection field aiohttp adds.
_CONNECTION = {
    (False, True): b"\r\n",
    (False, False): b"Connection: close\r\n\r\n",
    (True, True): b"Connection: keep-alive\r\n\r\n",
    (True, False): b"\r\n",
}
#: What follows the Date of a keep-alive HTTP/1.1 answer (the usual poll), and of one
#: that ends the connection (the request said Connection: close).
_TAIL = _SERVER + _CONNECTION[(False, True)]
_CLOSE_TAIL = _SERVER + _CONNECTION[(False, False)]


class FastLane:
    """The answers one 2030.5 app has taught, checked against its render cache."""

    def __init__(
        self, service: Sep2Service, identity: IdentityResolver, metrics: Metrics | None = None
    ) -> None:
        self.cache: RenderCache = service.cache
        self.metrics = metrics
        #: lfdi -> when it last made a request (time.monotonic), for csip_sep2_clients_seen.
        self.seen: dict[str, float] = metrics.seen_clients if metrics is not None else {}
        #: lfdi -> the principal admitted for it (Sep2Service keeps it current).
        self.ready: Mapping[str, Principal] = service.ready
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
        #: aiohttp's Date string for the current second, as bytes, and when it turns.
        self.date = b""
        self.date_until = 0.0
        #: Header blocks (from the request line's CRLF to the blank line) -> what the
        #: parser said of them.
        self._blocks: dict[bytes, Verdict] = {}

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
        if not reads or not self.enabled or self.ready.get(principal.lfdi) is not principal:
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
        if self.ready.get(lfdi) is answer.principal and self._current(answer):
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
    def verdict(self, block: bytes) -> Verdict:
        """What llhttp said of this header block when any client last sent it."""
        verdict = self._blocks.get(block)
        if verdict is None:
            verdict = _read_block(block)
            if len(self._blocks) >= MAX_BLOCKS:
                self._blocks.clear()
            self._blocks[block] = verdict
        return verdict

    def turn_date(self) -> bytes:
        """aiohttp's Date for this second (its own per-second string, so both lanes agree)."""
        now = time.time()
        self.date = helpers.rfc822_formatted_time().encode("latin-1")
        self.date_until = float(int(now) + 1)
        return self.date

    def wire(self, answer: Answer, http10: bool, keep_alive: bool, head: bool) -> bytes:
        """The bytes aiohttp would write for this answer."""
        date = self.date if time.time() < self.date_until else self.turn_date()
        first = answer.head if not http10 else _STATUS_10 + answer.head[len(_STATUS_11) :]
        connection = _CONNECTION[(http10, keep_alive)]
        if head:
            return b"".join((first, date, _SERVER, connection))
        return b"".join((first, date, _SERVER, connection, answer.body))


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
        "_block",
        "_block_size",
        "_client",
        "_closing",
        "_identity",
        "_idle_at",
        "_lane",
        "_lfdi",
        "_loop",
        "_parser",
        "_paused",
        "_requests",
        "_server",
        "_slow",
        "_verdict",
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
        #: The connection's identity and its LFDI (None until its first request).
        self._identity: ConnectionIdentity | None = None
        self._lfdi: str | None = None
        #: llhttp and its callbacks, made when the lane first needs them (most pollers'
        #: heads are read without them).
        self._requests: _Requests | None = None
        self._parser: Any = None
        #: The header block this connection last sent, and what llhttp said of it.
        self._block = b"\x00"  # matches no block (each starts with CRLF)
        self._block_size = -1
        self._verdict = _REFUSE
        #: The app has (or may have) part of the stream: everything goes to it for now.
        self._slow = False
        self._paused = False
        #: Closed (or closing) by the lane: nothing more is read.
        self._closing = False
        #: When the connection, idle since its last answer, is closed (the loop's clock;
        #: the server's sweep reads it while the app has no handler for the connection).
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
        server.watch(self)
        lane = self._lane
        assert lane is not None
        if not lane.enabled or lane.identity.trusted_proxy(host):
            # off, or identity per request from a proxy's header: the app's job
            self._lane = None
            self._hand_over()
            return
        # a connection that never sends a request is closed like aiohttp's
        self._idle_at = self._loop.time() + server.keepalive_timeout

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is not None:
            self._server.guard.release(self._client)
            self._client = None
        self._server.light.discard(self)
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

    def sweep(self, now: float) -> None:
        """aiohttp's keep-alive timeout, while the app has no handler for the connection."""
        if self._app is None and not self._closing and now >= self._idle_at:
            self.close_idle()

    def _hand_over(self) -> GuardedHandler:
        """Make aiohttp's handler and give it this connection (its keep-alive timer, its
        request task); from now on it is in `server.connections` too."""
        app = self._app = self._server.handler()
        assert self.transport is not None
        if self._identity is not None and self._lane is not None:
            self._lane.identity.remember(self.transport, self._identity)
        app.adopt(self.transport)
        if self._paused:
            app.pause_writing()
        return app

    # ---- requests ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """The usual poll, answered here on its own path: one plain HTTP/1.1 GET in the
        read, on a connection the app does not have, whose answer is current (a device's
        poll on a kept connection, or the one request of a new one). Anything else takes
        `_received`, which handles every case (this one included)."""
        lane = self._lane
        if (
            lane is None
            or self._app is not None
            or self._closing
            or self._paused
            or lane.access
            or not lane.enabled
        ):
            self._received(data)
            return
        lfdi = self._lfdi or self._identify()
        end = data.find(_HEAD_END, 0, MAX_REQUEST) + 4
        if lfdi is None or end != len(data):
            self._received(data)
            return
        line_end = data.find(b"\r\n")
        version = line_end - 9
        if (
            version > 4
            and data.startswith(b"GET /")
            and data.startswith(_HTTP11, version)
            and line_end + self._block_size == end
            and data.startswith(self._block, line_end)
        ):  # the header block this connection sent before
            if not self._verdict[0]:
                self._received(data)
                return
            target, keep_alive = data[4:version], self._verdict[1]
        else:
            head = self._read(data, 0, end)
            if head is None or head[1] or head[3]:  # the parser's, HTTP/1.0 or HEAD
                self._received(data)
                return
            target, _, keep_alive, _ = head
        answer = lane.answers.get((lfdi, target))
        if (
            answer is None
            or answer.checked != lane.cache.dropped
            or answer.expires_at is not None
            or answer.principal is not lane.ready.get(lfdi)
        ):
            self._received(data)
            return
        date = lane.date if lane.date_until > _time() else lane.turn_date()
        transport = self.transport
        assert transport is not None
        tail = _TAIL if keep_alive else _CLOSE_TAIL
        transport.write(b"".join((answer.head, date, tail, answer.body)))
        tally = answer.tally
        if tally is not None:
            tally[0] += 1
        lane.stats.answered += 1
        lane.cache.stats.fast_lane += 1
        now = self._loop.time()
        lane.seen[lfdi] = now
        if keep_alive:
            self._idle_at = now + self._server.keepalive_timeout  # read only with a timeout
        else:
            self.close_idle()  # aiohttp's own ending: the transport flushes, then closes

    def _identify(self) -> str | None:
        """The LFDI of the connection's client certificate, found on its first request
        (None: no usable certificate; the app answers every request with its 403)."""
        lane = self._lane
        transport = self.transport
        assert lane is not None and transport is not None
        ssl_object = transport.get_extra_info("ssl_object")
        identity = None if ssl_object is None else lane.identity.of_certificate(ssl_object)
        if identity is None or identity.problems:
            return None
        self._identity = identity
        self._lfdi = identity.lfdi
        return self._lfdi

    def _received(self, data: bytes) -> None:
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
                    (requests is None or requests.begun == requests.completed)
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
        transport = self.transport
        assert transport is not None
        lfdi = self._lfdi or self._identify()
        if lfdi is None:
            self._lane = None  # 403 on every request: the app's answer
            (app or self._hand_over()).data_received(data)
            return
        # A read is answered here whole or not at all: aiohttp parses a read in one go and
        # answers a single 400 for all of it when any part is malformed (or follows a
        # closing request), so a read holding anything this lane does not answer goes to
        # the app as it came.
        out: list[bytes] = []
        done: list[Answer] = []
        logged: list[tuple[str, bytes, str]] | None = None
        if lane.access:
            logged, started = [], self._loop.time()
        position, size = 0, len(data)
        keep_alive = True
        while position < size:
            end = data.find(_HEAD_END, position, position + MAX_REQUEST)
            if end < 0 or not keep_alive:
                self._pass(data, position)  # a request in pieces, or bytes after a close
                return
            end += 4
            head = self._read(data, position, end)
            if head is None:
                try:
                    head = self._parse(data[position:end])
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

    def _read(self, data: bytes, position: int, end: int) -> Head | None:
        """The head in data[position:end] when it is plain enough to read without the
        parser: `GET ` or `HEAD `, a target, ` HTTP/1.1` or ` HTTP/1.0`, then a header
        block llhttp has read before. The target is whatever lies between; only a key the
        app learnt (a target llhttp read before, in a line of this very form) finds an
        answer, so anything odd in it is a miss that the app answers. None: the parser's."""
        line_end = data.find(b"\r\n", position, end)
        if data.startswith(b"GET /", position):
            start, bare = position + 4, False
        elif data.startswith(b"HEAD /", position):
            start, bare = position + 5, True
        else:
            return None
        version = line_end - 9
        if version < start:
            return None
        if data.startswith(_HTTP11, version):
            http10 = False
        elif data.startswith(_HTTP10, version):
            http10 = True
        else:
            return None
        if line_end + self._block_size == end and data.startswith(self._block, line_end):
            verdict = self._verdict  # the connection's usual header block
        else:
            assert self._lane is not None
            block = data[line_end:end]
            verdict = self._verdict = self._lane.verdict(block)
            self._block, self._block_size = block, len(block)
        if http10:
            if not verdict[2]:
                return None
            return (data[start:version], True, verdict[3], bare)
        if not verdict[0]:
            return None
        return (data[start:version], False, verdict[1], bare)

    def _log(self, answered: list[tuple[str, bytes, str]], started: float) -> None:
        """Access lines for this read's answers (`access_log` on)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        duration = self._loop.time() - started
        for method, target, route in answered:
            observe.fast_line(method, target, route, host, duration)

    def _parse(self, raw: bytes) -> Head | None:
        """Read one request head (the parser is at a request boundary); what it says if
        the lane can answer it, else None (the parser has then read it as the app will)."""
        parser, requests = self._parsing()
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
        return (
            requests.target,
            http10,
            requests.keep_alive and not requests.close,
            method == b"HEAD",
        )

    def _parsing(self) -> tuple[Any, _Requests]:
        """The connection's llhttp parser and its callbacks (made on first use)."""
        requests = self._requests
        if requests is None:
            requests = self._requests = _Requests()
            self._parser = requests.parser = httptools.HttpRequestParser(requests)
        return self._parser, requests

    def _pass(self, data: bytes, parsed: int) -> None:
        """Hand the whole read to the app; the lane's parser, which has seen data[:parsed],
        follows the rest to know where the app's requests end."""
        lane = self._lane
        assert lane is not None
        lane.stats.passed += 1
        self._slow = True
        if parsed < len(data):
            parser = self._parsing()[0]
            try:
                parser.feed_data(data[parsed:] if parsed else data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self._lane = None  # the stream is the app's from now on
        (self._app or self._hand_over()).data_received(data)
