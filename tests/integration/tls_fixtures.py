"""Shared TLS test material: one test PKI per session and a tiny echo-identity TLS server.

Imported explicitly by the TLS tests (no conftest magic), so what a test depends on is visible.
The server answers each connection with one line "cipher|version|lfdi|problems" where
problems are the 2030.5 leaf-check results, i.e. exactly what csip's web layer computes once per
connection right after the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from cryptography import x509

from csip.pki.checks import check_leaf
from csip.pki.identity import lfdi_from_cert_der
from csip.pki.testpki import (
    SPECIAL_KINDS,
    IssuedCert,
    PkiPaths,
    build_chain,
    init_pki,
    issue_aggregator,
    issue_special,
)
from csip.web.tls import client_context, peer_der, server_context

TIMEOUT = 10.0


@dataclass(frozen=True)
class TlsPki:
    paths: PkiPaths
    chains: dict[int, IssuedCert]
    specials: dict[str, IssuedCert]
    aggregator: IssuedCert

    def server(self, *, strict_ccm8: bool = False, allow_tls13: bool = False) -> ssl.SSLContext:
        return server_context(
            ca_file=self.paths.ca_cert,
            cert_chain_file=self.paths.server_chain,
            key_file=self.paths.server_key,
            strict_ccm8=strict_ccm8,
            allow_tls13=allow_tls13,
        )

    def client(self, issued: IssuedCert | None) -> ssl.SSLContext:
        return client_context(
            ca_file=self.paths.ca_cert,
            cert_chain_file=issued.combined_path if issued is not None else None,
        )


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    directory = tmp_path_factory.mktemp("tls") / "certs"
    paths = init_pki(directory)
    return TlsPki(
        paths=paths,
        chains={depth: build_chain(directory, depth, serial="tls") for depth in (2, 3, 4)},
        specials={kind: issue_special(directory, kind, name="tls") for kind in SPECIAL_KINDS},
        aggregator=issue_aggregator(directory, "tls-agg"),
    )


@dataclass(frozen=True)
class Reply:
    cipher: str
    version: str
    lfdi: str
    problems: str


class Refused(Exception):
    """The server did not complete a usable TLS session with this client."""


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    ssl_object = writer.get_extra_info("ssl_object")
    cipher = ssl_object.cipher()
    der = peer_der(ssl_object)
    if der is None:  # cannot happen with CERT_REQUIRED; say so if it ever does
        line = f"{cipher[0]}|{cipher[1]}|-|no certificate"
    else:
        check = check_leaf(x509.load_der_x509_certificate(der), require_hardware_module_name=True)
        line = f"{cipher[0]}|{cipher[1]}|{lfdi_from_cert_der(der)}|{';'.join(check.problems)}"
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    """Run a TLS server on 127.0.0.1 with ``ctx``; yield its port."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def connect(port: int, ctx: ssl.SSLContext) -> Reply:
    """Handshake as a client and read the server's one-line answer; raise Refused on failure."""
    try:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
            )
            try:
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except (ssl.SSLError, ConnectionError) as exc:
        raise Refused(repr(exc)) from exc
    if not line:
        raise Refused("connection closed without an answer")
    cipher, version, lfdi, problems = line.decode().rstrip("\n").split("|")
    return Reply(cipher, version, lfdi, problems)


def connect_blocking(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[Reply, ssl.SSLSession | None, bool]:
    """A plain-socket client (asyncio cannot pass a session): returns reply, session, reused."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
    ):
        data = b""
        while not data.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        cipher, version, lfdi, problems = data.decode().rstrip("\n").split("|")
        return Reply(cipher, version, lfdi, problems), tls.session, bool(tls.session_reused)


def server_side_error(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str | None:
    """Why the server refused this client (None if it did not), seen from the server side.

    asyncio aborts a failed handshake without flushing the alert, so its clients only see a
    reset; a blocking server in a thread lets a test check the refusal was for the right reason.
    """
    errors: list[str | None] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(TIMEOUT)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok\n")
            except (ssl.SSLError, OSError) as exc:
                errors.append(str(exc))
            else:
                errors.append(None)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.recv(16)
        except (ssl.SSLError, OSError):
            pass
        finally:
            thread.join(TIMEOUT)
    return errors[0] if errors else "server thread did not finish"


__all__ = [
    "Refused",
    "Reply",
    "TlsPki",
    "connect",
    "connect_blocking",
    "server_side_error",
    "serving",
    "tls_pki",
]
