"""What a DER tells the utility about itself: capability, settings, status, availability,
its connection point (CSIP-AUS) and its log events. Pure rules, no wire format.

The wire layer hands these functions plain values (element names, power values with their
power-of-ten multipliers); they answer with the problems they find, so nothing is stored
when one is found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

#: One DER per EndDevice (CSIP IG §5: a DER client exposes one DER); its id under /der.
DER_ID = 1

#: The documents a device PUTs under its DER: path segment -> 2030.5 root element.
DER_DOCUMENTS: dict[str, str] = {
    "dercap": "DERCapability",
    "derg": "DERSettings",
    "ders": "DERStatus",
    "dera": "DERAvailability",
}

#: DERSettings elements without which the settings are incomplete. sep.xsd makes these
#: three mandatory (minOccurs 1): the active-power limit, the default ramp rate and the
#: time the settings were last changed. CSIP reads setMaxW as the base of every %setMaxW
#: control (opModMaxLimW, setGradW), so settings without it are not usable.
REQUIRED_SETTINGS: tuple[str, ...] = ("setGradW", "setMaxW", "updatedTime")

#: A setting that may not exceed the rating of the same quantity in DERCapability
#: (2030.5 DERSettings: "Defaults to rtgMax...", "SHALL be ... <= rtgMax...").
SETTING_RATINGS: dict[str, str] = {
    "setMaxW": "rtgMaxW",
    "setMaxVA": "rtgMaxVA",
    "setMaxVar": "rtgMaxVar",
    "setMaxChargeRateW": "rtgMaxChargeRateW",
    "setMaxDischargeRateW": "rtgMaxDischargeRateW",
    "setMaxWh": "rtgMaxWh",
    "setMaxA": "rtgMaxA",
    "setMaxAh": "rtgMaxAh",
}

#: Settings that are magnitudes: a negative value is not a limit.
NON_NEGATIVE_SETTINGS: tuple[str, ...] = (
    "setMaxW",
    "setMaxVA",
    "setMaxVar",
    "setMaxChargeRateW",
    "setMaxDischargeRateW",
    "setMaxWh",
    "setMaxA",
    "setMaxAh",
)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A 2030.5 value with its power-of-ten multiplier (ActivePower, ApparentPower ...)."""

    value: int
    multiplier: int = 0

    @property
    def exact(self) -> Fraction:
        return Fraction(self.value) * Fraction(10) ** self.multiplier


def missing_settings(present: set[str]) -> list[str]:
    """The required DERSettings elements that are absent, in schema order."""
    return [name for name in REQUIRED_SETTINGS if name not in present]


def settings_problems(
    settings: Mapping[str, Quantity], capability: Mapping[str, Quantity] | None
) -> list[str]:
    """Values in DERSettings that cannot be right, on their own or against the ratings."""
    problems = [
        f"{name} must not be negative"
        for name in NON_NEGATIVE_SETTINGS
        if name in settings and settings[name].value < 0
    ]
    if capability is not None:
        for name, rating in SETTING_RATINGS.items():
            if (
                name in settings
                and rating in capability
                and settings[name].exact > capability[rating].exact
            ):
                problems.append(
                    f"{name} ({settings[name].exact}) exceeds the DERCapability "
                    f"{rating} ({capability[rating].exact})"
                )
    return problems


# ---- CSIP-AUS ConnectionPoint: the National Metering Identifier ------------------------
#: NMI characters (AEMO NMI Procedure): digits and upper-case letters except O and I,
#: which are excluded to avoid confusion with 0 and 1.
NMI_CHARACTERS = frozenset("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
NMI_LENGTH = 10


def nmi_checksum(nmi: str) -> int:
    """The AEMO NMI checksum digit of a 10-character NMI.

    From the right-most character leftwards, every second character's ASCII value is
    doubled, starting with the right-most; the decimal digits of all the values are
    summed; the checksum is what brings that sum up to the next multiple of ten.
    """
    total = 0
    double = True
    for character in reversed(nmi):
        value = ord(character) * (2 if double else 1)
        total += sum(int(digit) for digit in str(value))
        double = not double
    return (10 - total % 10) % 10


def nmi_problem(connection_point_id: str) -> str | None:
    """Why this is not an Australian NMI (10 characters, or 11 with the checksum), or None."""
    nmi = connection_point_id
    if len(nmi) not in (NMI_LENGTH, NMI_LENGTH + 1):
        return (
            f"connectionPointId {nmi!r} is not an NMI: it must be {NMI_LENGTH} characters, "
            f"or {NMI_LENGTH + 1} with the checksum digit"
        )
    base = nmi[:NMI_LENGTH]
    bad = sorted(set(base) - NMI_CHARACTERS)
    if bad:
        return (
            f"connectionPointId {nmi!r} is not an NMI: {''.join(bad)!r} not allowed "
            "(digits and upper-case letters except O and I)"
        )
    if len(nmi) == NMI_LENGTH + 1:
        expected = nmi_checksum(base)
        if nmi[-1] != str(expected):
            return f"connectionPointId {nmi!r}: NMI checksum digit should be {expected}"
    return None


# ---- LogEvent -----------------------------------------------------------------------
#: LogEvents kept per EndDevice: past it the oldest (the tail of the list) are dropped as a
#: new one arrives, so one chattering device cannot fill the database.
LOG_EVENTS_KEPT = 1000


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One event a device posted; `id` is the server's, the rest is what the device sent."""

    id: int
    end_device_id: int
    created_date_time: int
    log_event_id: int
    log_event_code: int
    function_set: int
    profile_id: int
    log_event_pen: int
    received_at: int
    xml: bytes = b""

    def href(self) -> str:
        return f"/edev/{self.end_device_id}/lel/{self.id}"


def log_event_order(event: LogEvent) -> tuple[int, int, int]:
    """2030.5 list ordering of LogEventList: createdDateTime descending, then logEventID
    descending; the server's id (arrival order, newest first) breaks remaining ties.
    Used as a descending sort key."""
    return (event.created_date_time, event.log_event_id, event.id)
