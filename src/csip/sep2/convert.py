"""2030.5 -> domain: what a device's documents and readings say, as typed DER facts.

Called once per write (a PUT of DERCapability / DERSettings / DERStatus / DERAvailability, a
batch of mirrored readings), so dispatch, capacity and forecasts never parse XML again. The
input is already parsed and schema-valid; these functions only read it.

Values are exact: an ActivePower / WattHour ``value x 10^multiplier`` and a PerCent (hundredths
of a percent) are computed in decimal, then held as a float. Every such value has at most five
significant digits (Int16 / UInt16), which a double holds exactly as a decimal: the float's
shortest repr is the exact decimal the device meant (``123`` at multiplier ``-1`` is ``12.3``).

Readings (uom per sep.xsd UomType / IEC 61968-9):

* **W** is a reading of uom 38 (W) that describes the whole DER: phase absent, 0 (not
  applicable) or 224 (ABC), and a data qualifier absent, 0, 2 (average) or 12 (normal), so a
  per-phase value, a maximum or a standard deviation is not mistaken for the output.
* **State of charge** is a reading of uom 0: 2030.5 has no percent unit (65 is cos theta, the
  power factor), and csip's metering mirror reads uom 0 as a percentage, 0-100 %, as CSIP
  devices post it (``csip sim`` posts uom 0, multiplier -2, kind 0).
* Readings from a MirrorUsagePoint that is a premises aggregation point (the site meter,
  roleFlags bit 1) and not a DER (bit 3) describe the site, not the battery: left out.
* A reading's time is the end of its period (start + duration), never later than when it
  was received: a device whose clock runs ahead cannot make its state of charge look fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from lxml import etree

from csip.domain.fleet import (
    Availability,
    Capability,
    DerDocument,
    HourSample,
    ReadingFacts,
    Settings,
    Status,
)
from csip.domain.telemetry import Reading, ReadingType
from csip.sep2.xml import tag, text

UOM_W = 38
UOM_PERCENT = 0
#: phase values that mean "the whole device": absent, not applicable, ABC.
WHOLE_PHASES = frozenset({None, 0, 224})
#: data qualifiers of a plain value: absent, not applicable, average, normal.
PLAIN_QUALIFIERS = frozenset({None, 0, 2, 12})
#: MirrorUsagePoint roleFlags (sep.xsd RoleFlagsType).
IS_PREMISES_AGGREGATION_POINT = 1 << 1
IS_DER = 1 << 3
#: A batch's hours further back than this from its newest are left out of the hourly
#: record (it keeps 9 days).
RING_HOURS = 9 * 24


def _exact(value: int, multiplier: int) -> float:
    return float(Decimal(value).scaleb(multiplier))


def quantity(root: etree._Element, name: str) -> float | None:
    """An ActivePower / WattHour child (multiplier, value) in W or Wh, or None."""
    child = root.find(tag(name))
    if child is None:
        return None
    value, multiplier = text(child, "value"), text(child, "multiplier")
    if value is None:
        return None
    return _exact(int(value), int(multiplier or 0))


def percent(root: etree._Element, name: str) -> float | None:
    """A PerCent child (hundredths of a percent) in percent, or None."""
    raw = text(root, name)
    return None if raw is None else _exact(int(raw), -2)


def _status(root: etree._Element, name: str) -> etree._Element | None:
    return root.find(tag(name))


def _status_value(root: etree._Element, name: str) -> int | None:
    child = _status(root, name)
    raw = None if child is None else text(child, "value")
    return None if raw is None else int(raw)


def capability(root: etree._Element) -> Capability:
    return Capability(
        rtg_max_w=quantity(root, "rtgMaxW"),
        rtg_max_wh=quantity(root, "rtgMaxWh"),
        rtg_max_charge_rate_w=quantity(root, "rtgMaxChargeRateW"),
        rtg_max_discharge_rate_w=quantity(root, "rtgMaxDischargeRateW"),
    )


def settings(root: etree._Element) -> Settings:
    return Settings(
        set_max_w=quantity(root, "setMaxW"),
        set_max_wh=quantity(root, "setMaxWh"),
        set_max_charge_rate_w=quantity(root, "setMaxChargeRateW"),
        set_max_discharge_rate_w=quantity(root, "setMaxDischargeRateW"),
    )


def status(root: etree._Element) -> Status:
    soc = _status(root, "stateOfChargeStatus")
    return Status(
        state_of_charge=None if soc is None else percent(soc, "value"),
        storage_mode=_status_value(root, "storageModeStatus"),
        operational_mode=_status_value(root, "operationalModeStatus"),
    )


def availability(root: etree._Element) -> Availability:
    duration = text(root, "availabilityDuration")
    return Availability(
        reserve_percent=percent(root, "reservePercent"),
        reserve_charge_percent=percent(root, "reserveChargePercent"),
        stat_w_avail=quantity(root, "statWAvail"),
        availability_duration=None if duration is None else int(duration),
    )


CONVERTERS: dict[str, Callable[[etree._Element], DerDocument]] = {
    "DERCapability": capability,
    "DERSettings": settings,
    "DERStatus": status,
    "DERAvailability": availability,
}


def der_document(root: etree._Element) -> DerDocument | None:
    """The facts of a DER document, by its root element; None for other documents."""
    convert = CONVERTERS.get(etree.QName(root).localname)
    return None if convert is None else convert(root)


def is_w(rt: ReadingType) -> bool:
    return rt.uom == UOM_W and rt.phase in WHOLE_PHASES and rt.data_qualifier in PLAIN_QUALIFIERS


def is_soc(rt: ReadingType) -> bool:
    return rt.uom == UOM_PERCENT


def describes_der(role_flags: int) -> bool:
    """False for the site meter (a premises aggregation point that is not a DER)."""
    return not (role_flags & IS_PREMISES_AGGREGATION_POINT and not role_flags & IS_DER)


@dataclass(slots=True)
class _Hour:
    """One hour of a batch, accumulated (HourSample is its frozen form)."""

    w_sum: float = 0.0
    w_count: int = 0
    first_start: int | None = None
    last_start: int | None = None
    soc: float | None = None
    soc_at: int | None = None

    def add_w(self, start: int, value: float) -> None:
        self.w_sum += value
        self.w_count += 1
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_start = start if self.last_start is None else max(self.last_start, start)

    def add_soc(self, at: int, value: float) -> None:
        if self.soc_at is None or at >= self.soc_at:
            self.soc, self.soc_at = value, at


def reading_facts(
    batches: Iterable[tuple[ReadingType, Sequence[Reading]]], role_flags: int, received_at: int
) -> ReadingFacts | None:
    """The newest W and state of charge of one posted batch, and what it adds to each hour;
    None when the batch holds neither (nothing to update)."""
    if not describes_der(role_flags):
        return None
    w: tuple[int, float] | None = None
    soc: tuple[int, float] | None = None
    hours: dict[int, _Hour] = {}
    for rt, readings in batches:
        w_kind, soc_kind = is_w(rt), is_soc(rt)
        if not (w_kind or soc_kind):
            continue
        for reading in readings:
            value = _exact(reading.value, rt.power_of_ten_multiplier)  # the declared one
            at = min(received_at, reading.start + (reading.duration or 0))
            hour = hours.setdefault(reading.start // 3600, _Hour())
            if w_kind:
                hour.add_w(reading.start, value)
                if w is None or at >= w[0]:
                    w = (at, value)
            else:
                hour.add_soc(at, value)
                if soc is None or at >= soc[0]:
                    soc = (at, value)
    if w is None and soc is None:
        return None
    newest = max(hours)
    samples = tuple(
        HourSample(h, v.w_sum, v.w_count, v.first_start, v.last_start, v.soc, v.soc_at)
        for h, v in sorted(hours.items())
        if newest - h < RING_HOURS
    )
    return ReadingFacts(
        w=None if w is None else w[1],
        w_at=None if w is None else w[0],
        soc=None if soc is None else soc[1],
        soc_at=None if soc is None else soc[0],
        hours=samples,
    )
