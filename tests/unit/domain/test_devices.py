"""Who may reach which EndDevice (CSIP IG §5: devices and aggregators)."""

from __future__ import annotations

from csip.domain.devices import (
    ClientCertificate,
    EndDevice,
    PrincipalKind,
    may_access,
    mint_mrid,
    principal_for,
)

A, B, AGG = "A" * 40, "B" * 40, "C" * 40


def device(lfdi: str, aggregator_id: int | None = None) -> EndDevice:
    return EndDevice(1, lfdi, 1, 0, 0, 111115, aggregator_id=aggregator_id)


def test_unknown_certificate_is_a_device_that_reaches_only_itself() -> None:
    principal = principal_for(A, 1, None, now=100)
    assert principal.kind is PrincipalKind.DEVICE and not principal.disabled
    assert may_access(principal, device(A))
    assert not may_access(principal, device(B))
    assert not may_access(principal, device(B, aggregator_id=7))


def test_aggregator_reaches_the_devices_it_manages() -> None:
    principal = principal_for(AGG, 1, ClientCertificate(AGG, 7, True), now=100)
    assert principal.kind is PrincipalKind.AGGREGATOR
    assert may_access(principal, device(A, aggregator_id=7))
    assert not may_access(principal, device(B, aggregator_id=8))
    assert not may_access(principal, device(B))


def test_expired_attachment_and_disabled_certificates() -> None:
    expired = principal_for(AGG, 1, ClientCertificate(AGG, 7, True, expires_at=100), now=100)
    assert expired.kind is PrincipalKind.DEVICE
    assert not may_access(expired, device(A, aggregator_id=7))
    assert principal_for(A, 1, ClientCertificate(A, None, False), now=0).disabled
    assert principal_for(AGG, 1, ClientCertificate(AGG, 7, False), now=0).disabled


def test_minted_mrids_carry_the_pen_in_the_low_32_bits() -> None:
    mrid = mint_mrid(0xABC, 37250)
    assert len(mrid) == 32
    assert int(mrid, 16) & 0xFFFFFFFF == 37250
    assert int(mrid, 16) >> 32 == 0xABC
