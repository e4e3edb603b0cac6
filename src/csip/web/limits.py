"""Listener hardening: timeouts, connection caps, the face's own error bodies, `Server: csip`.

Every listener (2030.5, VTN, admin, redirect) is started through `listen`, which puts a
`GuardedHandler` (a subclass of aiohttp's per-connection protocol) behind the socket; the
2030.5 listener puts the fast lane's protocol there instead (web/fastlane.py), which applies
the same caps and idle timeout itself and adopts a GuardedHandler when a request needs the app:

- idle: aiohttp's keep-alive timer closes a connection that sends nothing for
  `keepalive_timeout`, from the TLS handshake on and after every response;
- slow headers: the first bytes of a request that do not complete its headers arm a deadline
  `header_timeout` ahead on that same timer (one timer per connection, rescheduled only
  when a request arrives in pieces); at the deadline the client gets 408 and is closed;
- slow bodies: `read_body` refuses a declared Content-Length over the face's limit at once
  (413) and gives the body `body_timeout` to arrive (408), both closing the connection;
- TLS handshakes get `tls_handshake_timeout`;
- connections are capped per listener and per client address (trusted proxies exempt);
  past a cap the new connection gets 503 with Retry-After and is closed;
- what aiohttp answers itself (overlong request line or header, bad framing) carries the
  face's error body (2030.5 Error, Problem, admin JSON), never text from the request;
- the Server header is `csip`, on every face and every path.

The hot path pays one attribute test per received chunk (`data_received`); a request that
arrives whole (the usual case) touches no timer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web, web_response
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from csip.config import Settings
from csip.errors import PayloadTooLarge, RequestTimeout
from csip.logsafe import Summary, safe
from csip.sep2.xml import CONTENT_TYPE as SEP2_CONTENT_TYPE
from csip.sep2.xml import error_body
from csip.web import observe

log = logging.getLogger(__name__)

SERVER_HEADER = "csip"
#: File descriptors kept free for the database, the broker, outgoing notifications, logs.
FD_RESERVE = 256
#: Listeners sharing the open-file budget (2030.5, VTN, admin, redirect).
LISTENERS = 4

#: The admin API's body cap (bulk pre-registration of many devices).
ADMIN_MAX_BODY = 16 * 1024 * 1024

T = TypeVar("T")
Render = Callable[[int, str], tuple[bytes, str]]


# ---- the faces' error bodies ----------------------------------------------------------
def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def sep2_error(status: int, _detail: str) -> tuple[bytes, str]:
    """A 2030.5 Error; reasonCode 2 (resource limit reached) for 503."""
    return error_body(2 if status == 503 else 0), SEP2_CONTENT_TYPE


def problem_json(status: int, detail: str) -> tuple[bytes, str]:
    body = {"type": "about:blank", "title": _phrase(status), "status": status, "detail": detail}
    return json.dumps(body).encode(), "application/json"


def admin_json(status: int, detail: str) -> tuple[bytes, str]:
    body = {"status": status, "title": _phrase(status), "detail": detail}
    return json.dumps(body).encode(), "application/json"


#: Which face an application is ("sep2", "vtn", "admin", "redirect"): its error bodies.
FACE = web.AppKey("csip_face", str)

FACES: dict[str, Render] = {
    "sep2": sep2_error,
    "vtn": problem_json,
    "admin": admin_json,
    "redirect": sep2_error,
}


def raw_response(render: Render, status: int, detail: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 response, for answers given outside any request (caps, timeouts)."""
    body, content_type = render(status, detail)
    head = (
        f"HTTP/1.1 {status} {_phrase(status)}\r\n"
        f"Server: {SERVER_HEADER}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


def brand_server_header() -> None:
    """`Server: csip` on every response aiohttp prepares (handlers, errors, redirects).

    aiohttp puts its module constant in with `setdefault` when preparing any response;
    replacing the constant costs nothing per request, unlike a header set per response.
    """
    setattr(web_response, "SERVER_SOFTWARE", SERVER_HEADER)  # noqa: B010


# ---- request bodies ---------------------------------------------------------------------
async def bounded(request: web.Request, max_bytes: int, read: Callable[[], Awaitable[T]]) -> T:
    """Run `read` (which consumes the body) within the limits: a declared Content-Length over
    `max_bytes` is refused before a byte is read (413), a body slower than the listener's
    `body_timeout` is 408. Both answers close the connection (every face force-closes on
    408 and 413, so the rest of the body is never read)."""
    timeout = body_timeout(request)
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"the body may be at most {max_bytes} bytes")
    try:
        async with asyncio.timeout(timeout):
            return await read()
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from exc


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    return await bounded(request, max_bytes, request.read)


#: Statuses after which the connection is closed (the request was not read to its end).
CLOSING = frozenset({408, 413})


def client_gone(exc: BaseException) -> bool:
    """A client that went away mid-request, or a body with bad framing: not a server fault."""
    return isinstance(exc, ConnectionError | RequestPayloadError)


def body_timeout(request: web.Request, default: float = 30.0) -> float:
    """The listener's body timeout (the default when the request came another way)."""
    protocol = request.protocol
    if isinstance(protocol, GuardedHandler):
        return protocol.guard.body_timeout
    return default


# ---- connections ------------------------------------------------------------------------
class ConnectionGuard:
    """One listener's connection counts and limits."""

    def __init__(self, settings: Settings, face: str, max_connections: int) -> None:
        self.face = face
        self.render = FACES[face]
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.max_connections = max_connections
        self.per_client = settings.max_connections_per_client
        self._exempt = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self.open = 0
        self.by_client: dict[str, int] = {}
        self.busy = raw_response(
            self.render, 503, "too many connections; try again later", "Retry-After: 10\r\n"
        )
        self.too_slow = raw_response(
            self.render, 408, f"the request headers did not arrive within {self.header_timeout:g} s"
        )
        self.refusals = Summary(log, logging.WARNING, f"{face}: connection refused (cap)")
        self.timeouts = Summary(log, logging.INFO, f"{face}: slow request headers, closed")

    def _exempt_host(self, host: str) -> bool:
        if not self._exempt:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._exempt)

    def admit(self, host: str) -> str | None:
        """The key to `release` later ("" = not counted per client), or None: refused."""
        if self.open >= self.max_connections:
            self.refusals.note(f"{self.open} open on this listener")
            return None
        key = ""
        if self.per_client and host and not self._exempt_host(host):
            count = self.by_client.get(host, 0)
            if count >= self.per_client:
                self.refusals.note(f"{count} open from {safe(host)}")
                return None
            self.by_client[host] = count + 1
            key = host
        self.open += 1
        return key

    def release(self, key: str) -> None:
        self.open -= 1
        if key:
            count = self.by_client.get(key, 1) - 1
            if count > 0:
                self.by_client[key] = count
            else:
                self.by_client.pop(key, None)


#: What aiohttp's parser errors mean, in fixed words (their own messages quote the request).
_FRAMING = {
    "LineTooLong": "the request line or a header is too long",
    "BadStatusLine": "malformed request line",
    "BadHttpMethod": "malformed request line",
    "InvalidURLError": "malformed request target",
    "InvalidHeader": "malformed header",
    "TransferEncodingError": "malformed chunked body",
    "ContentLengthError": "body shorter than its Content-Length",
}


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol with the caps, the header deadline and face errors."""

    __slots__ = ("_client", "_partial", "guard")

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self._client: str | None = None
        #: Bytes of a request arrived while idle, and its headers are not complete yet.
        self._partial = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        client = self.guard.admit(host)
        if client is None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(self.guard.busy)
            transport.close()
            self._manager = None  # connection_lost has nothing to undo
            return
        self._client = client
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is not None:
            self.guard.release(self._client)
            self._client = None
        super().connection_lost(exc)

    def adopt(self, transport: asyncio.BaseTransport) -> None:
        """Take over a connection another protocol admitted (and will release): the fast
        lane makes its app handler only when a request needs the app."""
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:  # a whole request is in (the usual case): nothing to arm
            self._partial = False
        elif (self._waiter is not None or not self._request_count) and not self._partial and data:
            # the start of a request while idle (or the connection's first, before the
            # handler's task ran), headers incomplete: arm the header deadline
            self._partial = True
            deadline = self._loop.time() + self.guard.header_timeout
            if deadline < self._next_keepalive_close_time:
                self._next_keepalive_close_time = deadline
                if self._keepalive_handle is not None:
                    self._keepalive_handle.cancel()
                self._keepalive_handle = self._loop.call_at(deadline, self._process_keepalive)

    def _process_keepalive(self) -> None:
        waiter = self._waiter
        if (
            self._partial
            and self.transport is not None
            and not self._force_close
            and waiter is not None
            and not waiter.done()
            and self._loop.time() >= self._next_keepalive_close_time
        ):
            self.guard.timeouts.note()
            self.transport.write(self.guard.too_slow)
        super()._process_keepalive()  # closes a connection past its deadline

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own answers (bad framing, overlong line or header, handler crash):
        the face's error body, nothing of the request echoed; 4xx is one INFO line."""
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
        else:
            reason = f"{type(exc).__name__}: {exc}" if exc is not None else (message or "")
            observe.explain(
                request,
                log,
                "%s: %s from %s: %s",
                self.guard.face,
                status,
                request.remote,
                safe(reason, 120),
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        detail = _FRAMING.get(type(exc).__name__, "malformed request") if status < 500 else ""
        body, content_type = self.guard.render(status, detail or _phrase(status))
        response = web.Response(status=status, body=body, headers={"Content-Type": content_type})
        response.force_close()
        return response


class LightProtocol(asyncio.Protocol):
    """What a face's own connection protocol offers its GuardedServer (the 2030.5 fast
    lane): `close_idle` closes the connection unless a request is in the app's hands;
    `sweep` closes it if it has been idle past the keep-alive timeout."""

    __slots__ = ()

    def close_idle(self) -> None:
        raise NotImplementedError

    def sweep(self, now: float) -> None:
        raise NotImplementedError


class GuardedServer(web.Server):
    """aiohttp's per-listener Server making GuardedHandlers (or the face's own protocol,
    which makes one when it needs the app)."""

    def __init__(
        self,
        server: web.Server,
        guard: ConnectionGuard,
        protocol: Callable[[GuardedServer], LightProtocol] | None = None,
    ) -> None:
        # aiohttp keeps the handler kwargs (timeouts, line limits, handler_args) private
        kwargs: dict[str, Any] = dict(server._kwargs)
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **kwargs,
        )
        self.guard = guard
        self.protocol = protocol
        self.keepalive_timeout = float(kwargs.get("keepalive_timeout", 75.0))
        #: Connections of the face's own protocol (aiohttp's `connections` lists only
        #: those that have an app handler): swept for idleness, closed at shutdown too.
        self.light: set[LightProtocol] = set()
        #: One timer sweeps them all (a timer of its own cost each new connection ~2 µs).
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(1.0, self.keepalive_timeout / 4)

    def __call__(self) -> asyncio.BaseProtocol:  # type: ignore[override]
        if self.protocol is not None:
            return self.protocol(self)
        return self.handler()

    def handler(self) -> GuardedHandler:
        """aiohttp's protocol for one connection: `connection_made` admits it against the
        caps, `adopt` takes a connection another protocol admitted."""
        return GuardedHandler(self, loop=self._loop, guard=self.guard, **self._kwargs)

    def watch(self, protocol: LightProtocol) -> None:
        """Count `protocol` among the light connections (swept, and closed at shutdown)."""
        self.light.add(protocol)
        if self._sweeper is None and self.keepalive_timeout > 0:
            self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        """Close the light connections idle past the keep-alive timeout (up to
        `_sweep_every` late: at most a second, a quarter of a short timeout)."""
        self._sweeper = None
        now = self._loop.time()
        for protocol in list(self.light):
            protocol.sweep(now)
        if self.light:
            self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    def pre_shutdown(self) -> None:
        """The runner's first step at cleanup (before `shutdown` waits for the handlers):
        connections the app never had are idle between reads, so they close now."""
        super().pre_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for protocol in list(self.light):
            protocol.close_idle()


#: A face's own connection protocol (the 2030.5 fast lane), made as `factory(server)` per
#: connection; it admits the connection itself and hands it to `server.handler()` (aiohttp)
#: when a request needs the app. Absent = a GuardedHandler per connection.
PROTOCOL: web.AppKey[Callable[..., LightProtocol]] = web.AppKey("csip_protocol")


class GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        app = self.app
        protocol = app.get(PROTOCOL)
        if protocol is not None and (app.middlewares or app.on_response_prepare):
            # something changes answers per request (the harness's recorder, the lab's
            # worker header): every request must reach the app
            protocol = None
        return GuardedServer(await super()._make_server(), self.guard, protocol)


class GuardedSite(web.TCPSite):
    """TCPSite with the TLS handshake timeout (aiohttp leaves asyncio's 60 s)."""

    def __init__(
        self,
        *args: Any,
        handshake_timeout: float,
        sock: socket.socket | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.handshake_timeout = handshake_timeout
        #: A socket bound beforehand (ports settled first; SO_REUSEPORT across workers).
        self.sock = sock

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        handshake = self.handshake_timeout if self._ssl_context else None
        if self.sock is not None:
            self._server = await loop.create_server(
                server,
                sock=self.sock,
                ssl=self._ssl_context,
                backlog=self._backlog,
                ssl_handshake_timeout=handshake,
            )
            return
        self._server = await loop.create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=handshake,
        )


# ---- the process --------------------------------------------------------------------------
def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one where allowed; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


_WARNED: set[tuple[int, int]] = set()


def connection_cap(settings: Settings, open_files: int) -> int:
    """max_connections, lowered (with a warning) so that every listener at its cap still
    leaves descriptors for the database, the broker and notifications."""
    budget = max(16, (open_files - FD_RESERVE) // LISTENERS)
    if settings.max_connections <= budget:
        return settings.max_connections
    if (settings.max_connections, budget) in _WARNED:
        return budget
    _WARNED.add((settings.max_connections, budget))
    log.warning(
        "max_connections %d per listener lowered to %d by the open-file limit %d "
        "(raise `ulimit -n` / LimitNOFILE to allow more)",
        settings.max_connections,
        budget,
        open_files,
    )
    return budget


async def listen(
    app: web.Application,
    settings: Settings,
    host: str | None,
    port: int,
    context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> tuple[web.AppRunner, int]:
    """Start one hardened listener, on `sock` if one was bound beforehand; (its runner, the
    bound port)."""
    brand_server_header()
    face = app.get(FACE, "sep2")
    guard = ConnectionGuard(settings, face, connection_cap(settings, raise_open_file_limit()))
    runner = GuardedRunner(
        app,
        guard,
        # metrics and access lines (web/observe.py): aiohttp's per-request hook
        access_log=observe.access_log,
        access_log_class=observe.observer_for(face, app.get(observe.METRICS), settings.access_log),
        handle_signals=False,
        keepalive_timeout=settings.keepalive_timeout,
        # a body the handler did not read is drained for at most this long, then closed
        lingering_time=min(settings.body_timeout, 5.0),
    )
    await runner.setup()
    site = GuardedSite(
        runner,
        host,
        port,
        ssl_context=context,
        backlog=1024,
        handshake_timeout=settings.tls_handshake_timeout,
        sock=sock,
    )
    await site.start()
    return runner, int(runner.addresses[-1][1])
