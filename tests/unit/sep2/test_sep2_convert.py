"""Device documents and readings to typed facts (sep2/convert.py): multipliers and PerCent
applied exactly, the right readings taken as W and state of charge, the rest left alone."""

from __future__ import annotations

from lxml import etree

from csip.domain.fleet import Availability, Capability, HourSample, Settings, Status
from csip.domain.telemetry import Reading, ReadingType
from csip.sep2.convert import der_document, reading_facts

SEP = 'xmlns="urn:ieee:std:2030.5:ns"'


def power(name: str, value: int, multiplier: int) -> str:
    return f"<{name}><multiplier>{multiplier}</multiplier><value>{value}</value></{name}>"


def parse(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def test_capability_and_settings_values_carry_their_multipliers_exactly() -> None:
    capability = parse(
        f"<DERCapability {SEP}><modesSupported>00500040</modesSupported>"
        + power("rtgMaxChargeRateW", 35, 2)
        + power("rtgMaxDischargeRateW", 5, 3)
        + power("rtgMaxW", 123, -1)
        + power("rtgMaxWh", 135, 2)
        + "<type>83</type></DERCapability>"
    )
    assert der_document(capability) == Capability(
        rtg_max_w=12.3,
        rtg_max_wh=13_500.0,
        rtg_max_charge_rate_w=3500.0,
        rtg_max_discharge_rate_w=5000.0,
    )
    settings = parse(
        f"<DERSettings {SEP}><setGradW>1000</setGradW>"
        + power("setMaxW", 48, 2)
        + "<updatedTime>1</updatedTime></DERSettings>"
    )
    # absent settings are None: the PUT replaces the whole part
    assert der_document(settings) == Settings(set_max_w=4800.0)


def test_status_and_availability_percentages_are_hundredths() -> None:
    status = parse(
        f"<DERStatus {SEP}>"
        "<operationalModeStatus><dateTime>5</dateTime><value>2</value></operationalModeStatus>"
        "<readingTime>5</readingTime>"
        "<stateOfChargeStatus><dateTime>5</dateTime><value>8255</value></stateOfChargeStatus>"
        "<storageModeStatus><dateTime>5</dateTime><value>1</value></storageModeStatus>"
        "</DERStatus>"
    )
    assert der_document(status) == Status(state_of_charge=82.55, storage_mode=1, operational_mode=2)
    availability = parse(
        f"<DERAvailability {SEP}><availabilityDuration>7200</availabilityDuration>"
        "<readingTime>5</readingTime><reserveChargePercent>1000</reserveChargePercent>"
        "<reservePercent>2050</reservePercent>" + power("statWAvail", 42, 2) + "</DERAvailability>"
    )
    assert der_document(availability) == Availability(
        reserve_percent=20.5,
        reserve_charge_percent=10.0,
        stat_w_avail=4200.0,
        availability_duration=7200,
    )
    assert der_document(parse(f"<DeviceStatus {SEP}/>")) is None


W = ReadingType(uom=38, power_of_ten_multiplier=0, kind=37, phase=0, data_qualifier=2)
KW = ReadingType(uom=38, power_of_ten_multiplier=3, kind=37, phase=224)
SOC = ReadingType(uom=0, power_of_ten_multiplier=-2, kind=0)
PHASE_A = ReadingType(uom=38, power_of_ten_multiplier=0, phase=128)
MAXIMUM = ReadingType(uom=38, power_of_ten_multiplier=0, data_qualifier=8)
VOLTS = ReadingType(uom=29, power_of_ten_multiplier=-1)
DER_MUP = 0x49  # isMirror | isDER | isSubmeter
SITE_MUP = 0x03  # isMirror | isPremisesAggregationPoint


def at(value: int, start: int, duration: int | None = 60) -> Reading:
    # the multiplier on a parsed reading is a placeholder: the ReadingType's is applied
    return Reading(value=value, power_of_ten_multiplier=0, start=start, duration=duration)


def test_w_and_state_of_charge_from_a_batch_with_the_hours_it_covers() -> None:
    batch = [
        (W, [at(1500, 7200), at(-500, 7260), at(900, 3600)]),
        (SOC, [at(5800, 7200), at(6000, 3600)]),
        (PHASE_A, [at(9999, 7300)]),  # one phase is not the device's output
        (MAXIMUM, [at(9999, 7300)]),  # nor is a maximum
        (VOLTS, [at(2300, 7300)]),
    ]
    facts = reading_facts(batch, DER_MUP, received_at=10_000)
    assert facts is not None
    assert (facts.w, facts.w_at) == (-500.0, 7320)  # the newest: start + duration
    assert (facts.soc, facts.soc_at) == (58.0, 7260)
    assert facts.hours == (
        HourSample(1, 900.0, 1, 3600, 3600, 60.0, 3660),
        HourSample(2, 1000.0, 2, 7200, 7260, 58.0, 7260),
    )


def test_a_multiplier_applies_to_w_and_a_clock_ahead_does_not_make_data_fresh() -> None:
    facts = reading_facts([(KW, [at(5, 20_000, 60)])], DER_MUP, received_at=10_000)
    assert facts is not None
    assert (facts.w, facts.w_at) == (5000.0, 10_000)  # never later than received


def test_the_site_meter_and_batches_without_w_or_charge_change_nothing() -> None:
    assert reading_facts([(W, [at(1500, 7200)])], SITE_MUP, received_at=10_000) is None
    assert reading_facts([(VOLTS, [at(2300, 7200)])], DER_MUP, received_at=10_000) is None
