"""TLS contexts for IEEE 2030.5 mutual TLS, and helpers to read the peer's identity.

2030.5 mandates TLS 1.2 with ``TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`` and ECDSA P-256
certificates on both sides, chaining to the SERCA. Real clients (inverters, gateways,
browsers used in labs, curl) often cannot do CCM8, so by default the server also accepts the
ECDHE-ECDSA AES-GCM suites but prefers CCM8 whenever the client offers it; ``strict_ccm8``
turns the server into a pure 2030.5 endpoint for conformance runs.

What OpenSSL checks here (at the handshake): the client chain reaches the configured SERCA,
dates, CA constraints, key usage, RFC 5280 strictness. What it cannot check on Python 3.11 (no
verify callback): the 2030.5 profile of the leaf; ``csip.pki.checks`` does that once per
connection from ``peer_der``.

This module imports only ``ssl`` so the web layer, the notification sender and the tests can
share it without pulling in aiohttp.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

__all__ = [
    "CCM8",
    "COMPAT_CIPHERS",
    "STRICT_CIPHERS",
    "AlertingContext",
    "client_context",
    "peer_der",
    "server_context",
]

#: The one cipher suite IEEE 2030.5 requires (OpenSSL's name for it).
CCM8 = "ECDHE-ECDSA-AES128-CCM8"
STRICT_CIPHERS = CCM8
#: CCM8 first, then AEAD suites with the same ECDHE + ECDSA shape: no RSA key exchange, no CBC.
COMPAT_CIPHERS = ":".join((CCM8, "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"))
#: 2030.5 ECDHE uses secp256r1 only.
_ECDH_CURVE = "prime256v1"


class AlertingSSLObject(ssl.SSLObject):
    """An SSLObject whose failed handshake lets the event loop send OpenSSL's alert.

    When OpenSSL refuses the client's certificate it queues the TLS alert that says why
    (unknown_ca, certificate_expired, bad_certificate, handshake_failure ...) in the outgoing
    buffer and fails the handshake; asyncio's and uvloop's TLS protocols then close the
    transport without writing that buffer, so the client only sees the socket close. Here the
    first failure is reported as "want read": the event loop flushes what is queued (the
    alert) and waits; the client, having read the alert, closes (or its next bytes, or the
    handshake timeout, end it) and the real error is raised on the next call.
    """

    _csip_failure: ssl.SSLError | None = None
    #: The outgoing buffer the event loop writes to the socket (set by AlertingContext).
    _csip_outgoing: ssl.MemoryBIO | None = None

    def do_handshake(self) -> None:
        if self._csip_failure is not None:
            raise self._csip_failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            outgoing = self._csip_outgoing
            if outgoing is None or not outgoing.pending:
                raise  # no alert queued (e.g. plain HTTP on the TLS port): close at once
            self._csip_failure = exc
            raise ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "sending the alert") from exc


class AlertingContext(ssl.SSLContext):
    """The server context: its connections send the alert of a refused handshake."""

    sslobject_class = AlertingSSLObject

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        sslobj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if isinstance(sslobj, AlertingSSLObject):
            sslobj._csip_outgoing = outgoing
        return sslobj


def server_context(
    *,
    ca_file: Path,
    cert_chain_file: Path,
    key_file: Path,
    strict_ccm8: bool = False,
    allow_tls13: bool = False,
) -> ssl.SSLContext:
    """Build the server side of 2030.5 mutual TLS.

    ``ca_file`` holds the trust anchors (the SERCA); clients must send their intermediates.
    ``cert_chain_file`` is the server leaf followed by its intermediates. TLS 1.3 is off by
    default because 2030.5 is specified on TLS 1.2 and its only cipher suite does not exist in
    1.3; ``allow_tls13`` exists for deployments whose clients all speak 1.3.

    Chain depth: 2030.5 chains are SERCA -> [MCA ->] [MICA ->] leaf, i.e. depth 2 to 4.
    Python's ``ssl`` has no way to set OpenSSL's verify depth; its default (100) admits all of
    them, and the SERCA being the only trust anchor is what bounds the chain in practice.
    """
    ctx = AlertingContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.load_cert_chain(certfile=str(cert_chain_file), keyfile=str(key_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if allow_tls13 else ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_checked_ciphers(STRICT_CIPHERS if strict_ccm8 else COMPAT_CIPHERS))
    # Pick CCM8 whenever the client lists it, whatever the client's own order says.
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ecdh_curve(_ECDH_CURVE)
    # RFC 5280 strictness (critical basicConstraints on CAs, key identifiers, ...): our own
    # chains satisfy it, and it refuses sloppy CAs at the handshake instead of later.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    # Session resumption (IDs and tickets) stays on, as it is by default: with thousands of
    # devices polling, full handshakes are the dominant cost.
    return ctx


def client_context(
    *,
    ca_file: Path,
    cert_chain_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """Build a 2030.5 client context: verify the server against ``ca_file``, check hostnames.

    Used by tests and by outgoing notifications. Offers the same suites as the server (CCM8
    first). ``cert_chain_file`` may hold the key too (a "combined" PEM), then ``key_file`` is
    not needed.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_checked_ciphers(COMPAT_CIPHERS))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if cert_chain_file is not None:
        ctx.load_cert_chain(
            certfile=str(cert_chain_file),
            keyfile=str(key_file) if key_file is not None else None,
        )
    elif key_file is not None:
        raise ValueError("key_file given without cert_chain_file")
    return ctx


def _checked_ciphers(ciphers: str) -> str:
    """Return ``ciphers``, or fail loudly if this OpenSSL cannot offer CCM8 at all.

    OpenSSL 3.0 offers CCM8 at the default security level. Should a later OpenSSL move it to
    security level 0, the fix is to append ``@SECLEVEL=0`` to this cipher string only (never
    globally, which would admit weak chains) and rely on ``csip.pki.checks`` for key sizes and
    signature algorithms; this check makes that day visible instead of silently serving GCM.
    """
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers(ciphers)
    except ssl.SSLError:
        offered = False
    else:
        offered = any(c["name"] == CCM8 for c in probe.get_ciphers())
    if not offered:
        raise ssl.SSLError(
            f"this OpenSSL ({ssl.OPENSSL_VERSION}) does not offer {CCM8} at its current "
            "security level; IEEE 2030.5 requires it (see csip.web.tls._checked_ciphers)"
        )
    return ciphers


def peer_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """The DER of the peer's leaf certificate, or None if it sent none.

    This is what the LFDI is computed from, once per connection.
    """
    return ssl_object.getpeercert(binary_form=True)


if sys.version_info >= (3, 13):

    def verified_chain_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
        """The chain OpenSSL verified, leaf first, as DER (Python 3.13+ only).

        Lets the server apply the 2030.5 profile to intermediates too, which 3.11 cannot.
        """
        return list(ssl_object.get_verified_chain())

    __all__ += ["verified_chain_der"]
