"""Tables of the typed DER facts (issue 12): one row per DER, written in the same unit of
work as each post of the documents and readings it comes from, and an hourly record of each
device's readings (its last 9 days), from which its hour-of-day behaviour is taken."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Integer, LargeBinary
from sqlmodel import Field, SQLModel


def _device_key() -> Column:  # type: ignore[type-arg]
    return Column(
        Integer, ForeignKey("end_device.id", ondelete="CASCADE"), primary_key=True, nullable=False
    )


def _float() -> Column:  # type: ignore[type-arg]
    return Column(Float, nullable=True)


def _time() -> Column:  # type: ignore[type-arg]
    return Column(BigInteger, nullable=True)


class DerFactsRow(SQLModel, table=True):
    """The facts of one DER (one per EndDevice, DER 1). Each part has the time it was posted;
    a PUT of a document replaces all the columns of its part."""

    __tablename__ = "der_facts"

    end_device_id: int = Field(sa_column=_device_key())
    # DERCapability
    rtg_max_w: float | None = Field(default=None, sa_column=_float())
    rtg_max_wh: float | None = Field(default=None, sa_column=_float())
    rtg_max_charge_rate_w: float | None = Field(default=None, sa_column=_float())
    rtg_max_discharge_rate_w: float | None = Field(default=None, sa_column=_float())
    capability_at: int | None = Field(default=None, sa_column=_time())
    # DERSettings
    set_max_w: float | None = Field(default=None, sa_column=_float())
    set_max_wh: float | None = Field(default=None, sa_column=_float())
    set_max_charge_rate_w: float | None = Field(default=None, sa_column=_float())
    set_max_discharge_rate_w: float | None = Field(default=None, sa_column=_float())
    settings_at: int | None = Field(default=None, sa_column=_time())
    # DERStatus
    state_of_charge: float | None = Field(default=None, sa_column=_float())
    storage_mode: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    operational_mode: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    status_at: int | None = Field(default=None, sa_column=_time())
    # DERAvailability
    reserve_percent: float | None = Field(default=None, sa_column=_float())
    reserve_charge_percent: float | None = Field(default=None, sa_column=_float())
    stat_w_avail: float | None = Field(default=None, sa_column=_float())
    availability_duration: int | None = Field(default=None, sa_column=_time())
    availability_at: int | None = Field(default=None, sa_column=_time())
    # the newest mirrored readings, with the time each describes
    w: float | None = Field(default=None, sa_column=_float())
    w_at: int | None = Field(default=None, sa_column=_time())
    soc: float | None = Field(default=None, sa_column=_float())
    soc_at: int | None = Field(default=None, sa_column=_time())
    #: the postRate its last MirrorUsagePoint asked for (the utility's own setting wins)
    requested_post_rate: int | None = Field(default=None, sa_column=_time())
    #: the utility's per-site reserve (percent), set through the admin API
    site_reserve_percent: float | None = Field(default=None, sa_column=_float())
    #: mean W per UTC hour of day, 24 little-endian float32 (NaN: no readings that hour)
    profile: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    #: the epoch hour (s // 3600) the profile was computed before
    profile_hour: int | None = Field(default=None, sa_column=_time())


class DerHourRow(SQLModel, table=True):
    """One hour of one device's readings, in a ring of 9 days (slot = hour mod 216): the
    sum and count of its W readings, the starts that tell a retried batch, its last state of
    charge in the hour. A new hour in a slot replaces the one 9 days older."""

    __tablename__ = "der_hour"

    end_device_id: int = Field(sa_column=_device_key())
    slot: int = Field(sa_column=Column(Integer, primary_key=True, nullable=False))
    hour: int = Field(sa_column=Column(BigInteger, nullable=False))
    w_sum: float = Field(sa_column=Column(Float, nullable=False))
    w_count: int = Field(sa_column=Column(Integer, nullable=False))
    first_start: int | None = Field(default=None, sa_column=_time())
    last_start: int | None = Field(default=None, sa_column=_time())
    soc: float | None = Field(default=None, sa_column=_float())
    soc_at: int | None = Field(default=None, sa_column=_time())
