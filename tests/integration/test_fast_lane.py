"""The fast lane (web/fastlane.py): an unchanged poll answered from ready bytes in front of
aiohttp gives byte for byte the answer aiohttp gives, over real mutual TLS sockets; anything
unusual goes to aiohttp; what the slow lane guarantees (deny-list, writes, poll rates, clock
boundaries, access rules) shows at once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csip.pki.testpki import IssuedCert
from csip.web.fastlane import MAX_BLOCKS, FastLane
from csip.web.identity import identity_from_der
from csip.web.limits import GuardedServer
from csip.web.sep2_common import LANE

from helpers import DEVICE_INFORMATION, register
from support import BACKENDS, Running, ServerFactory, client_ssl

READ_TIMEOUT = 20.0  # a safety net against a hang, not a measured figure


def lane_of(srv: Running) -> FastLane:
    assert srv.server.app is not None
    return srv.server.app.sep2_app[LANE]


def normalized(raw: bytes) -> bytes:
    """The transcript with the Date values (and /tm's currentTime) blanked: the lanes may
    answer in different seconds; everything else is compared as it is."""
    raw = re.sub(rb"<currentTime>\d+</currentTime>", b"<currentTime>-</currentTime>", raw)
    return re.sub(rb"\r\nDate: [^\r\n]*", b"\r\nDate: -", raw)


@dataclass
class Raw:
    """One mutual-TLS connection speaking bytes."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(
        cls, srv: Running, cert: IssuedCert, context: ssl.SSLContext | None = None
    ) -> Raw:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            srv.server.sep2_port,
            ssl=context or client_ssl(srv.pki, cert),
            server_hostname="localhost",
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, head: bool = False) -> bytes:
        """One whole response (the body by its Content-Length unless `head`)."""
        fields = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        found = re.search(rb"\r\ncontent-length: *(\d+)", fields, re.IGNORECASE)
        length = int(found.group(1)) if found and not head else 0
        body = await asyncio.wait_for(self.reader.readexactly(length), READ_TIMEOUT)
        return fields + body

    async def until_closed(self) -> bytes:
        return await asyncio.wait_for(self.reader.read(), READ_TIMEOUT)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def get(target: str, method: str = "GET", version: str = "1.1", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/{version}\r\nHost: localhost\r\n{extra}\r\n".encode()


CLOSING = get("/dcap", extra="Connection: close\r\n")


async def transcript(
    srv: Running, cert: IssuedCert, data: bytes, fast: bool, closing: bytes = CLOSING
) -> bytes:
    """Everything the server writes for `data` followed by `closing` (a request after which
    the server closes), on a new connection, with the fast lane on or off."""
    lane = lane_of(srv)
    lane.enabled = fast
    raw = await Raw.open(srv, cert)
    try:
        await raw.send(data + closing)
        return normalized(await raw.until_closed())
    finally:
        lane.enabled = True
        await raw.close()


async def both_lanes(
    srv: Running, cert: IssuedCert, data: bytes, closing: bytes = CLOSING
) -> tuple[bytes, int]:
    """(the transcript, how many answers the fast lane gave), after checking both lanes
    wrote the same bytes."""
    lane = lane_of(srv)
    slow = await transcript(srv, cert, data, False, closing)
    await transcript(srv, cert, data, True, closing)  # the app teaches what it answered
    before = lane.stats.answered
    fast = await transcript(srv, cert, data, True, closing)
    assert fast == slow, (data, slow, fast)
    answered = lane.stats.answered - before
    # once more with no header block remembered: each is read by the parser again
    lane._blocks.clear()
    apart = await transcript(srv, cert, data, True, closing)
    assert apart == slow, (data, slow, apart)
    return fast, answered


# ---- the world both clients poll -----------------------------------------------------------
async def ok(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status, data = await srv.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, data)
    return data


async def world(srv: Running) -> dict[str, list[str]]:
    """A device registered in band and an aggregator with one device, both members of a
    group with a program holding a control, a curve and a DefaultDERControl: every 2030.5
    resource either client can poll (their paths)."""
    device = srv.pki.device_a
    href = await register(srv, device)
    device_client = srv.client(device)
    put = await device_client.put(f"{href}/di", DEVICE_INFORMATION.format(lfdi=device.lfdi.lower()))
    assert put.status in (201, 204), put.body
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "agg-one"})
    await ok(srv, "PUT", f"/api/aggregators/agg-one/certificates/{agg.lfdi}", {})
    managed_lfdi = "AB" * 20
    created = await ok(
        srv, "POST", "/api/end-devices", [{"lfdi": managed_lfdi, "aggregator": "agg-one"}]
    )
    managed = created["items"][0]["href"]
    group = await ok(srv, "POST", "/api/groups", {"description": "feeder", "level": "feeder"})
    for lfdi in (device.lfdi, managed_lfdi):
        await ok(srv, "PUT", f"/api/groups/{group['id']}/members/{lfdi}")
    program = await ok(
        srv, "POST", f"/api/groups/{group['id']}/programs", {"description": "p", "primacy": 5}
    )
    pid, derp = program["id"], program["href"]
    curve = await ok(
        srv, "POST", f"/api/programs/{pid}/curves",
        {"curve_type": 11, "points": [[92, 30], [108, -30]],
         "x_multiplier": 0, "y_multiplier": 0, "y_ref_type": 3},
    )  # fmt: skip
    now = int((await ok(srv, "GET", "/api/clock"))["now"])
    (control,) = await ok(
        srv,
        "POST",
        f"/api/programs/{pid}/controls",
        {"controls": [{"start": now - 10, "duration": 3600, "base": {"opModConnect": True}}]},
    )
    await ok(srv, "PUT", f"/api/programs/{pid}/default-control", {"base": {"opModConnect": True}})
    message = await ok(
        srv,
        "POST",
        f"/api/groups/{group['id']}/messages",
        {"text": "peak at 5 pm", "start": now - 10, "duration": 3600, "priority": 2},
    )
    fsa = f"/fsa/{group['id']}"
    msg = message["href"].rsplit("/txt/", 1)[0]
    shared = [
        "/dcap",
        "/edev",
        "/edev?s=0&l=255",
        fsa,
        f"{fsa}/derp",
        f"{fsa}/derp?l=5",
        derp,
        f"{derp}/derc",
        f"{derp}/derc?s=0&l=10",
        control["href"],
        f"{derp}/actderc",
        f"{derp}/dderc",
        f"{derp}/dc",
        curve["href"],
        f"{fsa}/msg",
        msg,
        f"{msg}/txt",
        f"{msg}/txt?l=5",
        message["href"],
        f"{msg}/acttxt",
    ]

    def own(edev: str) -> list[str]:
        return [
            edev,
            f"{edev}/rg",
            f"{edev}/fsa",
            f"{edev}/fsa?s=0&l=1",
            f"{edev}/der",
            f"{edev}/der/1",
            f"{edev}/der/1/derp",
        ]

    return {
        "device": [*shared, *own(href), f"{href}/di"],
        "aggregator": [*shared, *own(managed)],
        "device_href": [href],
        "managed_href": [managed],
        "derp": [derp],
    }


# ---- byte for byte ---------------------------------------------------------------------
@BACKENDS
async def test_both_lanes_give_the_same_bytes_for_every_cacheable_resource(
    srv: Running,
) -> None:
    paths = await world(srv)
    lane = lane_of(srv)
    for who, cert in (("device", srv.pki.device_a), ("aggregator", srv.pki.aggregator)):
        raw = await Raw.open(srv, cert)
        try:
            for path in paths[who]:
                for method in ("GET", "HEAD"):
                    head = method == "HEAD"
                    lane.enabled = False
                    await raw.send(get(path, method))
                    slow = await raw.response(head)
                    assert slow.startswith(b"HTTP/1.1 200 OK\r\n"), (who, path, slow[:300])
                    lane.enabled = True
                    await raw.send(get(path, method))  # the app answers and teaches
                    taught = await raw.response(head)
                    before = lane.stats.answered
                    await raw.send(get(path, method))
                    fast = await raw.response(head)
                    assert lane.stats.answered == before + 1, (who, path, method)
                    assert normalized(fast) == normalized(slow) == normalized(taught), (
                        who,
                        path,
                        method,
                    )
        finally:
            await raw.close()


async def test_http10_keep_alive_and_close_in_both_lanes(srv: Running) -> None:
    paths = await world(srv)
    device = srv.pki.device_a
    edev = paths["device_href"][0]
    keep = get(edev, version="1.0", extra="Connection: keep-alive\r\n")
    # HTTP/1.0 keeps the connection only when asked to; the last request here closes it
    answer, fast = await both_lanes(srv, device, keep + keep, get(edev, "HEAD", "1.0"))
    assert answer.count(b"HTTP/1.0 200 OK\r\n") == 3
    assert answer.count(b"Connection: keep-alive") == 2
    assert fast == 3
    answer, fast = await both_lanes(srv, device, keep, get(edev, "GET", "1.0"))
    assert answer.count(b"HTTP/1.0 200 OK\r\n") == 2 and fast == 2
    answer, fast = await both_lanes(srv, device, b"")
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 1 and b"Connection: close" in answer
    assert fast == 1
    # bytes after a closing request: llhttp refuses the whole read (400), in both lanes
    answer, fast = await both_lanes(srv, device, get(edev, extra="Connection: close\r\n"))
    assert answer.startswith(b"HTTP/1.0 400 ") and fast == 0


async def test_pipelined_requests_are_answered_in_order_across_the_lanes(srv: Running) -> None:
    paths = await world(srv)
    device = srv.pki.device_a
    edev = paths["device_href"][0]
    foreign = paths["managed_href"][0]  # the aggregator's device: 404 for this device
    put = (
        f"PUT {edev}/di HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/sep+xml\r\n"
    ).encode()
    document = DEVICE_INFORMATION.format(lfdi=device.lfdi.lower()).encode()
    put += f"Content-Length: {len(document)}\r\n\r\n".encode() + document
    # (a subscription list is always the app's; /tm would differ from second to second)
    data = get(edev) + get(foreign) + get(f"{edev}/sub") + get(edev, "HEAD") + put + get("/dcap")
    answer, fast = await both_lanes(srv, device, data)
    statuses = re.findall(rb"HTTP/1.1 (\d+)", answer)
    assert statuses == [b"200", b"404", b"200", b"200", b"204", b"200", b"200"]
    # a read the lane cannot answer whole goes to the app whole (aiohttp answers a read
    # with a malformed part by one 400 for all of it: the lane must not have answered any)
    data = get(edev) + get("/dcap", "HEAD") + get(foreign) + get(edev)
    answer, fast = await both_lanes(srv, device, data)
    statuses = re.findall(rb"HTTP/1.1 (\d+)", answer)
    assert statuses == [b"200", b"200", b"404", b"200", b"200"]
    assert fast == 0
    # one the lane can answer whole, it does, in order, up to the closing request
    data = get(edev) + get("/dcap", "HEAD") + get(edev, "HEAD")
    answer, fast = await both_lanes(srv, device, data)
    assert re.findall(rb"HTTP/1.1 (\d+)", answer) == [b"200"] * 4
    assert fast == 4


async def paced(srv: Running, cert: IssuedCert, requests: list[bytes], fast: bool) -> bytes:
    """Each request in a read of its own (the next is sent once the answer is in), on a
    new connection, with the fast lane on or off: the transcript."""
    lane = lane_of(srv)
    lane.enabled = fast
    raw = await Raw.open(srv, cert)
    answers = []
    try:
        for request in requests:
            await raw.send(request)
            answers.append(await raw.response(request.startswith(b"HEAD ")))
        answers.append(await raw.until_closed())
    finally:
        lane.enabled = True
        await raw.close()
    return normalized(b"".join(answers))


async def test_one_request_per_read_across_header_blocks_in_both_lanes(srv: Running) -> None:
    """A client that waits for each answer (every poller): the lane reads a request whose
    header block is the one this connection sent before without the parser, so blocks of
    the same length that say something else, misses, HEAD and HTTP/1.0 in between must
    still get exactly the app's answers."""
    paths = await world(srv)
    device = srv.pki.device_a
    edev = paths["device_href"][0]
    usual = "Accept: x/yyyyyyyyyy\r\n"
    requests = [
        get("/dcap", extra=usual),
        get("/dcap", extra=usual),
        get("/dcap", extra="Accept: x/zzzzzzzzzz\r\n"),  # same length, other bytes
        get("/dcap", extra="Host: localhost22222\r\n"),  # same length, a second Host: 400
    ]
    rest = [
        get(edev, extra=usual),
        get("/edev/999999", extra=usual),  # a miss: the app's 404
        get(edev, extra=usual),
        get(edev, "HEAD", extra=usual),
        get(edev, version="1.0", extra="Connection: keep-alive\r\n"),
        get(edev, extra=usual),
        CLOSING,
    ]
    slow = await paced(srv, device, requests[:3] + rest, False)
    await paced(srv, device, requests[:3] + rest, True)  # the app teaches
    lane = lane_of(srv)
    before = lane.stats.answered
    fast = await paced(srv, device, requests[:3] + rest, True)
    assert fast == slow
    assert slow.count(b"HTTP/1.1 200 OK") == 8 and b" 404 " in slow
    assert lane.stats.answered - before == 9  # all but the 404
    # a block of the usual length that the parser refuses (a second Host): the app's 400,
    # and the end of the connection
    slow = await paced(srv, device, requests, False)
    fast = await paced(srv, device, requests, True)
    assert fast == slow
    assert slow.endswith(b"</Error>") and b" 400 Bad Request\r\n" in slow


@pytest.mark.parametrize(
    "data",
    [
        # Expect and bodies on a GET, chunked or not
        get("/dcap", extra="Expect: 100-continue\r\n"),
        get("/dcap", extra="Content-Length: 3\r\n") + b"abc",
        get("/dcap", extra="Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n",
        # repeated or missing Host, other Connection tokens, an upgrade
        get("/dcap", extra="Host: other\r\n"),
        b"GET /dcap HTTP/1.1\r\n\r\n",
        get("/dcap", extra="Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"),
        # oversized and malformed lines and headers
        get("/dcap", extra="X-Big: " + "a" * 9000 + "\r\n"),
        get("/" + "a" * 9000),
        b"GET /dcap HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n",
        b"GET  /dcap HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /dcap HTTP/9.9\r\nHost: localhost\r\n\r\n",
        b"\x16\x03\x01 not http\r\n\r\n",
        # another method, a lower-case method
        get("/dcap", "OPTIONS"),
        get("/dcap", "get"),
    ],
    ids=lambda d: d[:40].decode(errors="replace"),
)
async def test_unusual_requests_get_the_apps_answer(srv: Running, data: bytes) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    await both_lanes(srv, device, data)


async def test_a_request_in_pieces_goes_to_the_app_and_the_next_one_is_fast(
    srv: Running,
) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    lane = lane_of(srv)
    raw = await Raw.open(srv, device)
    try:
        await raw.send(get("/dcap"))
        whole = await raw.response()  # taught
        request = get("/dcap")
        before = lane.stats.answered
        await raw.send(request[:10])
        await asyncio.sleep(0.05)  # let the first piece arrive alone
        await raw.send(request[10:])
        pieces = await raw.response()
        assert lane.stats.answered == before  # the app answered it
        await raw.send(request)
        fast = await raw.response()
        assert lane.stats.answered == before + 1
        assert normalized(pieces) == normalized(fast) == normalized(whole)
    finally:
        await raw.close()


# ---- what the slow lane guarantees -------------------------------------------------------
async def test_deny_list_poll_rates_writes_and_clock_show_at_once(srv: Running) -> None:
    paths = await world(srv)
    device = srv.pki.device_a
    lane = lane_of(srv)
    derp = paths["derp"][0]
    edev = paths["device_href"][0]
    raw = await Raw.open(srv, device)

    async def poll(path: str) -> bytes:
        await raw.send(get(path))
        return await raw.response()

    try:
        for path in ("/dcap", f"{derp}/actderc", edev):
            await poll(path)  # taught
        before = lane.stats.answered
        dcap = await poll("/dcap")
        assert lane.stats.answered == before + 1
        # the admin status counts the polls the lane answered
        status = await ok(srv, "GET", "/api/status")
        assert status["sep2_cache"]["fast_lane"] >= lane.stats.answered > 0
        # a poll-rate change shows on the next poll
        await ok(srv, "PUT", "/api/rates", {"poll_rates": {"DeviceCapability": 123}})
        assert b'pollRate="123"' in await poll("/dcap")
        assert b'pollRate="123"' not in dcap
        # a device write shows on the next poll
        assert b"<enabled>true</enabled>" in await poll(edev)
        # the clock: the active control ends when the clock passes its end
        assert b'all="1"' in await poll(f"{derp}/actderc")
        await ok(srv, "PUT", "/api/clock", {"advance": 7200})
        assert b'all="0"' in await poll(f"{derp}/actderc")
        # the deny-list: 403 from the next request on
        await ok(srv, "PUT", f"/api/certificates/{device.lfdi}", {"enabled": False})
        await raw.send(get("/dcap"))
        assert (await raw.response()).startswith(b"HTTP/1.1 403 ")
    finally:
        await raw.close()


def poll_blocking(
    port: int, context: ssl.SSLContext, request: bytes, session: ssl.SSLSession | None = None
) -> tuple[bytes, ssl.SSLSession | None, bool]:
    """One request on a new TLS connection (offering `session` for resumption): (the
    answer, the session, whether it was resumed). Blocking: asyncio cannot offer a session."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock,
        context.wrap_socket(sock, server_hostname="localhost", session=session) as tls,
    ):
        tls.sendall(request)
        answer = b""
        while not answer.endswith(b"</DeviceCapability>"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer, tls.session, tls.session_reused


async def test_a_resumed_session_is_fast_from_its_first_request(srv: Running) -> None:
    """Session resumption is on; a resumed session's identity costs no certificate parsing
    (the same DER, answered from identity_from_der's cache) and its first poll is answered
    by the fast lane."""
    device = srv.pki.device_a
    await register(srv, device)
    lane = lane_of(srv)
    port = srv.server.sep2_port
    context = client_ssl(srv.pki, device)
    request = get("/dcap")
    first, session, resumed = await asyncio.to_thread(poll_blocking, port, context, request)
    assert first.startswith(b"HTTP/1.1 200 OK") and not resumed
    misses = identity_from_der.cache_info().misses
    before = lane.stats.answered
    again, _, resumed = await asyncio.to_thread(poll_blocking, port, context, request, session)
    assert resumed
    assert normalized(again) == normalized(first)
    assert lane.stats.answered == before + 1
    assert identity_from_der.cache_info().misses == misses


async def test_a_read_the_app_takes_is_counted_once(srv: Running) -> None:
    """A read holding an answerable poll and a miss goes to the app whole: the poll is
    counted once in csip_http_requests_total (by the app), not also by the lane."""
    device = srv.pki.device_a
    await register(srv, device)
    assert srv.server.app is not None
    metrics = srv.server.app.metrics
    labels = {"face": "sep2", "route": "/dcap", "status": "200"}

    def dcap_count() -> float:
        metrics.sync()
        return metrics.registry.get_sample_value("csip_http_requests_total", labels) or 0.0

    raw = await Raw.open(srv, device)
    try:
        await raw.send(get("/dcap"))  # the app answers and teaches
        await raw.response()
        await asyncio.sleep(0.1)  # the app's handler back at rest: the next read is the lane's
        lane = lane_of(srv)
        before, answered = dcap_count(), lane.stats.answered
        await raw.send(get("/dcap") + get("/edev/999999"))
        assert (await raw.response()).startswith(b"HTTP/1.1 200 OK")
        assert (await raw.response()).startswith(b"HTTP/1.1 404")
        await asyncio.sleep(0.1)  # aiohttp counts once the response is written
        assert lane.stats.answered == answered  # the app had the read
        assert dcap_count() == before + 1
        await raw.send(get("/dcap"))  # and a poll the lane answers is counted once too
        assert (await raw.response()).startswith(b"HTTP/1.1 200 OK")
        assert lane.stats.answered == answered + 1
        assert dcap_count() == before + 2
    finally:
        await raw.close()


# ---- connections the app never had ---------------------------------------------------------
def sep2_listener(srv: Running) -> GuardedServer:
    listener = srv.server.runners[0].server  # the 2030.5 listener is started first
    assert isinstance(listener, GuardedServer)
    return listener


async def polling_connection(srv: Running) -> Raw:
    """A device's connection whose polls the lane answers (taught on another connection)."""
    device = srv.pki.device_a
    teacher = await Raw.open(srv, device)
    await teacher.send(get("/dcap"))
    assert (await teacher.response()).startswith(b"HTTP/1.1 200 OK")
    await teacher.close()
    raw = await Raw.open(srv, device)
    lane = lane_of(srv)
    before = lane.stats.answered
    for _ in range(3):
        await raw.send(get("/dcap"))
        assert (await raw.response()).startswith(b"HTTP/1.1 200 OK")
    assert lane.stats.answered == before + 3
    return raw


async def test_a_polling_connection_costs_no_app_handler_and_still_idles_out(
    make_server: ServerFactory,
) -> None:
    """A device that only polls is answered without aiohttp's per-connection handler (its
    parser, its task); the keep-alive timeout still closes it once it goes quiet."""
    srv = await make_server(keepalive_timeout=1.0)
    await register(srv, srv.pki.device_a)
    raw = await polling_connection(srv)
    listener = sep2_listener(srv)
    # the teaching connection has aiohttp's handler (until it idles out); the polling one not
    assert len(listener.light) == len(listener.connections) + 1
    # yet TCP keep-alive probes are on for it (inherited from the listening socket)
    for protocol in listener.light:
        transport = protocol.transport
        assert isinstance(transport, asyncio.BaseTransport)
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    await asyncio.sleep(0.5)  # quiet for half the timeout: still open, and the poll rearms it
    await raw.send(get("/dcap"))
    assert (await raw.response()).startswith(b"HTTP/1.1 200 OK")
    started = asyncio.get_running_loop().time()
    assert await raw.until_closed() == b""  # closed by the server, no bytes
    waited = asyncio.get_running_loop().time() - started
    assert 0.5 <= waited < 10, waited
    await raw.close()
    # a connection that never sends a request is closed after the same timeout
    raw = await Raw.open(srv, srv.pki.device_a)
    started = asyncio.get_running_loop().time()
    assert await raw.until_closed() == b""
    assert 0.75 <= asyncio.get_running_loop().time() - started < 10
    await raw.close()
    # a request that needs the app on such a connection still gets the app's answer
    raw = await polling_connection(srv)
    await raw.send(get("/edev/999999"))
    assert (await raw.response()).startswith(b"HTTP/1.1 404")
    assert len(listener.light) == len(listener.connections)  # every connection has one now
    await raw.close()


async def test_stopping_the_listener_closes_connections_the_app_never_had(
    make_server: ServerFactory,
) -> None:
    srv = await make_server()
    await register(srv, srv.pki.device_a)
    raw = await polling_connection(srv)
    runner = srv.server.runners.pop(0)
    await runner.cleanup()  # what `csip serve` does at SIGTERM, for the 2030.5 listener
    assert await raw.until_closed() == b""
    await raw.close()


async def test_remembered_header_blocks_stay_bounded(srv: Running) -> None:
    """A client sending a new header block every time (a nonce header) is still answered
    by the fast lane, and cannot grow the lane's memo of header blocks past MAX_BLOCKS."""
    await register(srv, srv.pki.device_a)
    lane = lane_of(srv)
    for n in range(MAX_BLOCKS + 10):
        lane.verdict(b"\r\nHost: localhost\r\nX-Nonce: %08d\r\n\r\n" % n)
    assert len(lane._blocks) <= MAX_BLOCKS
    raw = await Raw.open(srv, srv.pki.device_a)
    try:
        await raw.send(get("/dcap"))
        taught = await raw.response()
        before = lane.stats.answered
        for n in range(5):
            await raw.send(get("/dcap", extra=f"X-Nonce: {n:08d}\r\n"))
            assert normalized(await raw.response()) == normalized(taught)
        assert lane.stats.answered == before + 5
    finally:
        await raw.close()
    assert len(lane._blocks) <= MAX_BLOCKS


# ---- fuzzing the request side --------------------------------------------------------------
# plain polls most of the time, so that the lane answers a good share of the examples
METHODS = st.sampled_from(["GET"] * 6 + ["HEAD"] * 3 + ["POST", "PUT", "DELETE", "get", "GET "])
VERSIONS = st.sampled_from(["1.1", "1.1", "1.1", "1.0", "1.2", "2.0", "0.9"])
FIELDS = st.sampled_from(
    [
        "Accept: */*",
        "Accept: application/sep+xml",
        "User-Agent: fuzz/1.0",
        "Connection: keep-alive",
        "Connection: close",
        "Connection: Keep-Alive",
        "Connection: upgrade",
        "Expect: 100-continue",
        "Host: localhost",
        "Host: other",
        "Content-Length: 0",
        "X-Empty:",
        "X-Space : x",
        " folded: x",
        "X-Ctl: a\x01b",
        "X-Utf8: \u00e9",
        "Upgrade: h2c",
        "TE: trailers",
    ]
)


def fuzz_request(paths: list[str], junk: st.DrawFn) -> bytes:
    method = junk(METHODS)
    target = junk(
        st.one_of(
            st.sampled_from(paths),
            st.sampled_from(paths),
            st.sampled_from(["/edev/999999", "/nope", "*", "http://localhost/dcap", "/dcap?l=x"]),
            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20).map(
                lambda t: "/" + t
            ),
        )
    )
    version = junk(VERSIONS)
    host = junk(st.sampled_from(["Host: localhost\r\n", "", "Host: localhost\r\n"]))
    fields = junk(st.one_of(st.just([]), st.lists(FIELDS, max_size=4)))
    eol = junk(st.sampled_from(["\r\n", "\r\n", "\r\n", "\n"]))
    lines = [f"{method} {target} HTTP/{version}", *([host.strip()] if host else []), *fields]
    text = eol.join(lines) + eol + eol
    return text.encode("utf-8")


async def test_fuzzed_requests_get_equal_answers_in_both_lanes(srv: Running) -> None:
    paths = await world(srv)
    device = srv.pki.device_a
    loop = asyncio.get_running_loop()
    targets = paths["device"][:8] + paths["managed_href"]

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        requests = data.draw(st.lists(st.builds(lambda: None), min_size=1, max_size=3))
        stream = b"".join(fuzz_request(targets, data.draw) for _ in requests)
        future = asyncio.run_coroutine_threadsafe(both_lanes(srv, device, stream), loop)
        future.result(timeout=120)

    before = lane_of(srv).stats.answered
    await asyncio.to_thread(check)
    assert lane_of(srv).stats.answered > before  # the lane took part
