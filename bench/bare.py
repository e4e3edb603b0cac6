"""The bare-protocol limit: what Python can do at all for a poll over csip's own TLS.

An asyncio Protocol on uvloop behind csip's SSLContext (``csip.web.tls.server_context``) that
answers each request with a whole HTTP response built beforehand (status line, headers, the
exact body csip returned for that path), looked up by the request target in a dict. No HTTP
parser beyond finding the end of the headers and the target, no identity, no cache checks:
the floor under any Python 2030.5 server on this TLS stack, measured beside csip in the same
run (bench/poll.py).

Usage::

    python bench/bare.py --port P --certs-dir D --bodies bodies.json

Prints ``ready <port>`` once listening; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from csip.web.tls import server_context

CONTENT_TYPE = "application/sep+xml"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nServer: bare\r\n\r\n"


def responses(bodies: dict[str, bytes]) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """path -> (keep-alive response, closing response)."""
    keep: dict[bytes, bytes] = {}
    close: dict[bytes, bytes] = {}
    for path, body in bodies.items():
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: bare\r\n"
        ).encode()
        keep[path.encode()] = head + b"\r\n" + body
        close[path.encode()] = head + b"Connection: close\r\n\r\n" + body
    return keep, close


class Bare(asyncio.Protocol):
    def __init__(self, keep: dict[bytes, bytes], close: dict[bytes, bytes]) -> None:
        self.keep = keep
        self.close = close
        self.transport: Any = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's TLS transport is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out = []
        closing = False
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            line_end = buffer.find(b"\r\n", start)
            target = buffer[buffer.find(b" ", start) + 1 : buffer.rfind(b" ", start, line_end)]
            closing = b"Connection: close" in buffer[line_end:end]
            table = self.close if closing else self.keep
            out.append(table.get(target, NOT_FOUND))
            start = end + 4
            if closing:
                break
        self.buffer = buffer[start:]
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if closing:
            self.transport.close()


async def run(port: int, certs_dir: Path, bodies: dict[str, bytes]) -> None:
    context = server_context(
        ca_file=certs_dir / "ca.pem",
        cert_chain_file=certs_dir / "server-chain.pem",
        key_file=certs_dir / "server.key",
    )
    keep, close = responses(bodies)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Bare(keep, close), "127.0.0.1", port, ssl=context, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certs-dir", type=Path, required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON: path -> latin-1 body")
    args = parser.parse_args()
    raw = json.loads(args.bodies.read_text())
    bodies = {path: text.encode("latin-1") for path, text in raw.items()}
    coroutine = run(args.port, args.certs_dir, bodies)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - csip itself falls back the same way
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


if __name__ == "__main__":
    main()
