"""Real handshakes against ``csip.web.tls.server_context`` with the test PKI.

What must be refused at the handshake is what OpenSSL checks there (chain to our SERCA, dates,
CA used as a leaf, no certificate at all); the 2030.5 leaf rules OpenSSL does not know are
shown to reach the server intact, where ``csip.pki.checks`` flags them.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from csip.web.tls import CCM8

import tls_fixtures
from tls_fixtures import Refused, TlsPki, connect, connect_blocking, server_side_error, serving

tls_pki = tls_fixtures.tls_pki

GCM = "ECDHE-ECDSA-AES128-GCM-SHA256"


def only(ctx: ssl.SSLContext, ciphers: str) -> ssl.SSLContext:
    """Make a client context offer only ``ciphers`` over TLS 1.2."""
    ctx.set_ciphers(ciphers)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@pytest.mark.parametrize("depth", [2, 3, 4])
async def test_chains_of_depth_2_3_and_4_are_accepted(tls_pki: TlsPki, depth: int) -> None:
    issued = tls_pki.chains[depth]
    async with serving(tls_pki.server()) as port:
        reply = await connect(port, tls_pki.client(issued))
    assert reply.lfdi == issued.lfdi
    assert reply.problems == ""
    assert reply.version == "TLSv1.2"


async def test_aggregator_certificate_is_accepted(tls_pki: TlsPki) -> None:
    async with serving(tls_pki.server()) as port:
        reply = await connect(port, tls_pki.client(tls_pki.aggregator))
    assert reply.lfdi == tls_pki.aggregator.lfdi
    # Only the (device-only) HardwareModuleName rule fails; the server relaxes it for aggregators.
    assert (
        reply.problems == "subjectAltName lacks the HardwareModuleName a device certificate needs"
    )


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("self-signed", "self-signed certificate"),
        ("foreign", "self-signed certificate in certificate chain"),
        ("expired", "certificate has expired"),
        ("ca-as-leaf", "unsuitable certificate purpose"),
        (None, "peer did not return a certificate"),
    ],
)
async def test_bad_chains_and_no_certificate_are_refused_at_the_handshake(
    tls_pki: TlsPki, kind: str | None, reason: str
) -> None:
    client = tls_pki.client(tls_pki.specials[kind] if kind is not None else None)
    async with serving(tls_pki.server()) as port:
        with pytest.raises(Refused):
            await connect(port, client)
    error = await asyncio.to_thread(server_side_error, tls_pki.server(), client)
    assert error is not None and reason in error


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("rsa", "ECDSA P-256"),
        ("no-policy", "certificatePolicies"),
        ("no-hwname", "HardwareModuleName"),
    ],
)
async def test_leaf_rule_breakers_pass_openssl_and_are_caught_after_the_handshake(
    tls_pki: TlsPki, kind: str, problem: str
) -> None:
    issued = tls_pki.specials[kind]
    async with serving(tls_pki.server()) as port:
        reply = await connect(port, tls_pki.client(issued))
    assert reply.lfdi == issued.lfdi
    assert problem in reply.problems


async def test_a_ccm8_only_client_gets_ccm8(tls_pki: TlsPki) -> None:
    device = tls_pki.chains[4]
    for strict in (False, True):
        async with serving(tls_pki.server(strict_ccm8=strict)) as port:
            reply = await connect(port, only(tls_pki.client(device), CCM8))
        assert reply.cipher == CCM8


async def test_compat_server_prefers_ccm8_and_falls_back_to_gcm(tls_pki: TlsPki) -> None:
    device = tls_pki.chains[4]
    async with serving(tls_pki.server()) as port:
        offered_ccm8 = await connect(port, tls_pki.client(device))
        # The client lists GCM first: the server's preference must still pick CCM8.
        gcm_first = await connect(port, only(tls_pki.client(device), f"{GCM}:{CCM8}"))
        gcm_only = await connect(port, only(tls_pki.client(device), GCM))
    assert offered_ccm8.cipher == CCM8
    assert gcm_first.cipher == CCM8
    assert gcm_only.cipher == GCM


async def test_strict_server_refuses_a_gcm_only_client(tls_pki: TlsPki) -> None:
    server = tls_pki.server(strict_ccm8=True)
    client = only(tls_pki.client(tls_pki.chains[4]), GCM)
    async with serving(server) as port:
        with pytest.raises(Refused):
            await connect(port, client)
    error = await asyncio.to_thread(server_side_error, server, client)
    assert error is not None and "no shared cipher" in error


async def test_tls13_is_refused_unless_allowed(tls_pki: TlsPki) -> None:
    device = tls_pki.chains[4]

    def tls13_only() -> ssl.SSLContext:
        ctx = tls_pki.client(device)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    async with serving(tls_pki.server()) as port:
        with pytest.raises(Refused):
            await connect(port, tls13_only())
    error = await asyncio.to_thread(server_side_error, tls_pki.server(), tls13_only())
    assert error is not None and "unsupported protocol" in error
    async with serving(tls_pki.server(allow_tls13=True)) as port:
        reply = await connect(port, tls13_only())
    assert reply.version == "TLSv1.3"
    assert reply.lfdi == device.lfdi


async def test_sessions_resume_with_the_same_identity(tls_pki: TlsPki) -> None:
    device = tls_pki.chains[4]
    ctx = tls_pki.client(device)
    async with serving(tls_pki.server()) as port:
        first, session, reused_first = await asyncio.to_thread(connect_blocking, port, ctx)
        assert session is not None
        second, _, reused_second = await asyncio.to_thread(connect_blocking, port, ctx, session)
    assert not reused_first
    assert reused_second
    assert first.lfdi == second.lfdi == device.lfdi
