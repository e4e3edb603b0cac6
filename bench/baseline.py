"""The baseline csip is measured against: a minimal aiohttp server on csip's own TLS context.

It serves a fixed dict ``path?query -> bytes`` (the exact bytes csip returned for those paths,
captured by ``poll.py`` before the run) as ``application/sep+xml`` and answers 404 to anything
else. Same SSLContext (``csip.web.tls.server_context``), same event loop (uvloop), same aiohttp
and the same listener settings as csip (access log off, backlog 1024); no middleware, no
identity, no cache lookups. The ratio csip/baseline is therefore the cost of csip's own
per-request work, with TLS, HTTP parsing and the event loop factored out.

Usage::

    python bench/baseline.py --port P --certs-dir D --bodies bodies.json

``bodies.json`` maps each path (with its query string) to the body as a latin-1 string.
Prints ``ready <port>`` on stdout once listening; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from aiohttp import web

from csip.web.tls import server_context

CONTENT_TYPE = "application/sep+xml"


def make_app(bodies: dict[str, bytes]) -> web.Application:
    headers = {"Content-Type": CONTENT_TYPE}

    async def serve(request: web.Request) -> web.Response:
        body = bodies.get(request.path_qs)
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", serve)
    return app


async def run(port: int, certs_dir: Path, bodies: dict[str, bytes]) -> None:
    context = server_context(
        ca_file=certs_dir / "ca.pem",
        cert_chain_file=certs_dir / "server-chain.pem",
        key_file=certs_dir / "server.key",
    )
    runner = web.AppRunner(make_app(bodies), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {runner.addresses[-1][1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


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
