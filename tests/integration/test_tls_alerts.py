"""Issue 9 item 18: a client refused at the TLS handshake receives the alert that says why
(unknown CA, expired, no certificate ...), not just a closed socket; checked with Python's
ssl module as the client against a running csip (asyncio here; `csip serve` runs uvloop,
whose TLS protocol goes through the same SSLObject hook in csip.web.tls).

A certificate that passes OpenSSL but breaks a 2030.5 leaf rule is refused after the
handshake, at the HTTP level (403 with an Error body, then close): Python 3.11's ssl has no
verify callback to fail the handshake for it and no call to send an alert afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid

import pytest

from csip.pki.testpki import IssuedCert, issue_special
from csip.web.tls import client_context

from support import Pki, ServerFactory


def handshake(port: int, pki: Pki, issued: IssuedCert | None) -> str:
    """Handshake and one request as a blocking client; the error text, or "" on success."""
    context = client_context(
        ca_file=pki.ca, cert_chain_file=issued.combined_path if issued is not None else None
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /dcap HTTP/1.1\r\nHost: localhost\r\n\r\n")
                tls.recv(100)
        except (ssl.SSLError, OSError) as exc:
            return str(exc)
    return ""


@pytest.mark.parametrize(
    ("kind", "alert"),
    [
        ("foreign", "TLSV1_ALERT_UNKNOWN_CA"),
        ("self-signed", "TLSV1_ALERT_UNKNOWN_CA"),
        ("expired", "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        ("ca-as-leaf", "ALERT_UNSUPPORTED_CERTIFICATE"),
        (None, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
    ],
)
async def test_a_refused_client_gets_the_alert_that_says_why(
    make_server: ServerFactory, pki: Pki, kind: str | None, alert: str
) -> None:
    srv = await make_server()
    issued = (
        issue_special(pki.directory, kind, name=uuid.uuid4().hex[:8]) if kind is not None else None
    )
    error = await asyncio.to_thread(handshake, srv.server.sep2_port, pki, issued)
    assert alert in error, error
    # and the server is unharmed
    assert await asyncio.to_thread(handshake, srv.server.sep2_port, pki, pki.device_a) == ""
