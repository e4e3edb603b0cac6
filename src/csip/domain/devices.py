"""EndDevices, aggregators, client certificates, and who may reach what."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PrincipalKind(StrEnum):
    DEVICE = "device"
    AGGREGATOR = "aggregator"


@dataclass(frozen=True, slots=True)
class Principal:
    """The client on a TLS connection, as access control sees it.

    A certificate attached to an aggregator makes the client an aggregator; any other
    certificate that chains to the SERCA is a device that may see only its own EndDevice.
    """

    lfdi: str
    sfdi: int
    kind: PrincipalKind
    aggregator_id: int | None = None
    disabled: bool = False
    #: A key naming everything this client can see (one per aggregator, one per device);
    #: computed once, since it keys the render cache on every poll.
    scope: str = ""

    def __post_init__(self) -> None:
        if not self.scope:
            scope = (
                f"agg:{self.aggregator_id}"
                if self.kind is PrincipalKind.AGGREGATOR
                else f"dev:{self.lfdi}"
            )
            object.__setattr__(self, "scope", scope)


@dataclass(frozen=True, slots=True)
class EndDevice:
    id: int
    lfdi: str
    sfdi: int
    changed_time: int
    registered_at: int
    pin: int
    enabled: bool = True
    device_category: str | None = None
    post_rate: int | None = None
    #: The aggregator that manages this device; None when the device speaks for itself.
    aggregator_id: int | None = None
    in_band: bool = False
    #: The EndDevice of an aggregator's own certificate (the CSIP-AUS aggregator model): it
    #: holds the aggregator's subscriptions, for every device it manages, and nothing else.
    aggregator_self: bool = False

    @property
    def href(self) -> str:
        return f"/edev/{self.id}"


@dataclass(frozen=True, slots=True)
class Aggregator:
    id: int
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A certificate the utility knows by LFDI: attached to an aggregator and/or disabled."""

    lfdi: str
    aggregator_id: int | None
    enabled: bool
    expires_at: int | None = None


def may_access(principal: Principal, device: EndDevice) -> bool:
    """CSIP IG §5: a device reaches its own EndDevice; an aggregator those it manages.

    An aggregator also reaches an EndDevice registered for its own certificate's LFDI.
    """
    if device.lfdi == principal.lfdi:
        return True
    return (
        principal.kind is PrincipalKind.AGGREGATOR
        and device.aggregator_id is not None
        and device.aggregator_id == principal.aggregator_id
    )


def principal_for(lfdi: str, sfdi: int, cert: ClientCertificate | None, now: int) -> Principal:
    """Classify a connecting certificate from what the utility has recorded about it."""
    if cert is None:
        return Principal(lfdi, sfdi, PrincipalKind.DEVICE)
    expired = cert.expires_at is not None and cert.expires_at <= now
    disabled = not cert.enabled
    if cert.aggregator_id is not None and not expired:
        return Principal(lfdi, sfdi, PrincipalKind.AGGREGATOR, cert.aggregator_id, disabled)
    return Principal(lfdi, sfdi, PrincipalKind.DEVICE, None, disabled)


def mint_mrid(serial: int, pen: int) -> str:
    """A 128-bit mRID: 96 bits of our own serial, then the PEN in the low 32 bits (2030.5)."""
    return f"{serial & ((1 << 96) - 1):024X}{pen & 0xFFFFFFFF:08X}"
