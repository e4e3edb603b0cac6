"""Persistence of the typed DER facts: written in the unit of work of each post, read for a
whole fleet at once.

Writes are single upserts (INSERT ... ON CONFLICT DO UPDATE, on SQLite and PostgreSQL
alike), so a device's PUT or reading batch costs one statement here, never a read-modify-
write; the newer-wins rules are SQL CASEs on the row being updated. Once an hour per device,
a reading batch also recomputes the device's hour-of-day behaviour from its hourly ring (at
most 192 rows).
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Table, and_, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from csip.domain.fleet import (
    CAPACITY_FIELDS,
    DEFAULT_POST_RATE,
    PART_OF,
    CapacityInputs,
    DerDocument,
    DerFacts,
    HourSample,
    ReadingFacts,
    capacity_inputs_of,
)
from csip.domain.telemetry import effective_post_rate
from csip.store.rows import select_tuples
from csip.store.tables import EndDeviceRow
from csip.store.tables_der import DerControlRow, DerGroupMemberRow
from csip.store.tables_dispatch import DispatchControlRow
from csip.store.tables_fleet import DerFactsRow, DerHourRow

#: Ring size of der_hour: 9 days of hours (the 7 before yesterday for the forecast made at
#: yesterday 00:00, yesterday itself, and today).
RING = 9 * 24
FACTS: Table = DerFactsRow.__table__  # type: ignore[attr-defined]
HOURS: Table = DerHourRow.__table__  # type: ignore[attr-defined]
DEVICES: Table = EndDeviceRow.__table__  # type: ignore[attr-defined]
MEMBERS: Table = DerGroupMemberRow.__table__  # type: ignore[attr-defined]
#: der_facts columns read into DerFacts, in its field order (after device_id).
_READ = (
    "rtg_max_w",
    "rtg_max_wh",
    "rtg_max_charge_rate_w",
    "rtg_max_discharge_rate_w",
    "capability_at",
    "set_max_w",
    "set_max_wh",
    "set_max_charge_rate_w",
    "set_max_discharge_rate_w",
    "settings_at",
    "state_of_charge",
    "storage_mode",
    "operational_mode",
    "status_at",
    "reserve_percent",
    "reserve_charge_percent",
    "stat_w_avail",
    "availability_duration",
    "availability_at",
    "w",
    "w_at",
    "soc",
    "soc_at",
)
_CHUNK = 500


def _insert(s: AsyncSession, table: Table) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (both spell it the same way)."""
    if s.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def encode_profile(profile: Sequence[float] | None) -> bytes | None:
    if profile is None:
        return None
    packed = array("f", profile)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def decode_profile(raw: bytes | None) -> array[float] | None:
    """24 float32 (4 bytes each) rather than a tuple of floats: a fifth of the memory."""
    if raw is None:
        return None
    profile = array("f")
    profile.frombytes(bytes(raw))
    if sys.byteorder == "big":
        profile.byteswap()
    return profile


# ---- writes --------------------------------------------------------------------------------
async def update_der_document_facts(
    s: AsyncSession, device_id: int, document: DerDocument, at: int
) -> None:
    """A DER document was PUT: its part's facts (all of them, absent ones None) and time."""
    values: dict[str, Any] = {f.name: getattr(document, f.name) for f in fields(document)}
    values[PART_OF[type(document)]] = at
    statement = _insert(s, FACTS).values(end_device_id=device_id, **values)
    await s.execute(statement.on_conflict_do_update(index_elements=["end_device_id"], set_=values))


def _newer(column: str, at: str, excluded: Any) -> Any:
    """The posted value when it describes a later (or the same) moment than the stored one."""
    stored_at = FACTS.c[at]
    posted_at = excluded[at]
    newer = and_(posted_at.is_not(None), or_(stored_at.is_(None), posted_at >= stored_at))
    return case((newer, excluded[column]), else_=FACTS.c[column])


async def update_reading_facts(s: AsyncSession, device_id: int, facts: ReadingFacts) -> int | None:
    """A batch of readings: the newest W and state of charge (newer wins), and each hour it
    covers added to the device's hourly ring. Answers the epoch hour the device's profile was
    last computed before (None: never), so the caller knows when to recompute it."""
    statement = _insert(s, FACTS).values(
        end_device_id=device_id, w=facts.w, w_at=facts.w_at, soc=facts.soc, soc_at=facts.soc_at
    )
    ex = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["end_device_id"],
        set_={
            "w": _newer("w", "w_at", ex),
            "w_at": _newer("w_at", "w_at", ex),
            "soc": _newer("soc", "soc_at", ex),
            "soc_at": _newer("soc_at", "soc_at", ex),
        },
    ).returning(FACTS.c.profile_hour)
    profile_hour = (await s.execute(statement)).scalar_one_or_none()
    if facts.hours:
        await _update_hours(s, device_id, facts.hours)
    return None if profile_hour is None else int(profile_hour)


async def _update_hours(s: AsyncSession, device_id: int, hours: Sequence[HourSample]) -> None:
    """Upsert each hour into its ring slot. In the same hour, W readings are added unless the
    batch starts at or before the last one added (a retry, already counted); a later hour
    replaces what the slot held (8 days older); an older hour than the slot's is ignored."""
    statement = _insert(s, HOURS).values(
        [
            {
                "end_device_id": device_id,
                "slot": h.hour % RING,
                "hour": h.hour,
                "w_sum": h.w_sum,
                "w_count": h.w_count,
                "first_start": h.first_start,
                "last_start": h.last_start,
                "soc": h.soc,
                "soc_at": h.soc_at,
            }
            for h in hours
        ]
    )
    ex, t = statement.excluded, HOURS.c
    new_hour = ex.hour > t.hour
    adds = and_(ex.w_count > 0, or_(t.last_start.is_(None), ex.first_start > t.last_start))
    newer_soc = and_(ex.soc_at.is_not(None), or_(t.soc_at.is_(None), ex.soc_at >= t.soc_at))
    statement = statement.on_conflict_do_update(
        index_elements=["end_device_id", "slot"],
        set_={
            "hour": case((new_hour, ex.hour), else_=t.hour),
            "w_sum": case((new_hour, ex.w_sum), (adds, t.w_sum + ex.w_sum), else_=t.w_sum),
            "w_count": case(
                (new_hour, ex.w_count), (adds, t.w_count + ex.w_count), else_=t.w_count
            ),
            "first_start": case(
                (new_hour, ex.first_start),
                (and_(adds, t.first_start.is_(None)), ex.first_start),
                else_=t.first_start,
            ),
            "last_start": case(
                (new_hour, ex.last_start), (adds, ex.last_start), else_=t.last_start
            ),
            "soc": case((new_hour, ex.soc), (newer_soc, ex.soc), else_=t.soc),
            "soc_at": case((new_hour, ex.soc_at), (newer_soc, ex.soc_at), else_=t.soc_at),
        },
        where=ex.hour >= t.hour,
    )
    await s.execute(statement)


async def select_hour_samples(
    s: AsyncSession, device_ids: Sequence[int], since_hour: int = 0
) -> dict[int, list[HourSample]]:
    """The hourly ring of these devices (hours from `since_hour`), oldest first."""
    found: dict[int, list[HourSample]] = {d: [] for d in device_ids}
    ids = list(device_ids)
    for i in range(0, len(ids), _CHUNK):
        query = (
            select(
                HOURS.c.end_device_id,
                HOURS.c.hour,
                HOURS.c.w_sum,
                HOURS.c.w_count,
                HOURS.c.first_start,
                HOURS.c.last_start,
                HOURS.c.soc,
                HOURS.c.soc_at,
            )
            .where(HOURS.c.end_device_id.in_(ids[i : i + _CHUNK]), HOURS.c.hour >= since_hour)
            .order_by(HOURS.c.end_device_id, HOURS.c.hour)
        )
        for device, *rest in (await s.execute(query)).all():
            found[device].append(HourSample(*rest))
    return found


async def update_profile(
    s: AsyncSession, device_id: int, profile: Sequence[float] | None, hour: int
) -> None:
    """The device's hour-of-day behaviour, computed from whole hours before `hour`."""
    await s.execute(
        update(FACTS)
        .where(FACTS.c.end_device_id == device_id)
        .values(profile=encode_profile(profile), profile_hour=hour)
    )


async def _upsert(s: AsyncSession, device_id: int, values: dict[str, Any]) -> None:
    statement = _insert(s, FACTS).values(end_device_id=device_id, **values)
    await s.execute(statement.on_conflict_do_update(index_elements=["end_device_id"], set_=values))


async def update_requested_post_rate(
    s: AsyncSession, device_id: int, post_rate: int | None
) -> None:
    """The postRate the device's MirrorUsagePoint asked for (the utility's setting wins)."""
    await _upsert(s, device_id, {"requested_post_rate": post_rate})


async def update_site_reserve(s: AsyncSession, device_id: int, percent: float | None) -> None:
    """The utility's reserve for this site (percent of usable energy); None removes it."""
    await _upsert(s, device_id, {"site_reserve_percent": percent})


# ---- reads ---------------------------------------------------------------------------------
def _scope(
    device_ids: Sequence[int] | None, group_ids: Iterable[int] | None, aggregator_id: int | None
) -> list[Any]:
    conditions: list[Any] = [DEVICES.c.aggregator_self.is_(False)]
    if aggregator_id is not None:
        conditions.append(DEVICES.c.aggregator_id == aggregator_id)
    if group_ids is not None:
        members = select(MEMBERS.c.end_device_id).where(MEMBERS.c.group_id.in_(list(group_ids)))
        conditions.append(DEVICES.c.id.in_(members))
    if device_ids is not None:
        conditions.append(DEVICES.c.id.in_(list(device_ids)))
    return conditions


async def select_der_facts(
    s: AsyncSession,
    *,
    device_ids: Sequence[int] | None = None,
    group_ids: Iterable[int] | None = None,
    aggregator_id: int | None = None,
    default_post_rate: int | None = None,
) -> list[DerFacts]:
    """The facts of every EndDevice in scope (all when no filter is given; an aggregator
    certificate's own EndDevice is never a DER), those that posted nothing included: they
    are part of the fleet and count as unavailable. One query, rows as tuples: 100,000
    devices are read in well under a second."""
    columns = [FACTS.c[name] for name in _READ]
    query = (
        select(
            DEVICES.c.id,
            *columns,
            DEVICES.c.post_rate,
            FACTS.c.requested_post_rate,
            FACTS.c.site_reserve_percent,
            FACTS.c.profile,
        )
        .select_from(DEVICES.outerjoin(FACTS, FACTS.c.end_device_id == DEVICES.c.id))
        .where(*_scope(device_ids, group_ids, aggregator_id))
        .order_by(DEVICES.c.id)
    )
    out = []
    for row in (await s.execute(query)).all():
        *values, device_rate, requested, site, profile = row
        rate = effective_post_rate(device_rate, default_post_rate, requested)
        out.append(
            DerFacts(  # type: ignore[misc]  # positional: _READ is DerFacts' field order (tested)
                *values,
                post_rate=rate or DEFAULT_POST_RATE,
                site_reserve_percent=site,
                profile=decode_profile(profile),
            )
        )
    return out


#: der_facts columns of CAPACITY_FIELDS (DerFacts calls the reading's time soc_at_reading).
_CAPACITY_COLUMNS = tuple("soc_at" if f == "soc_at_reading" else f for f in CAPACITY_FIELDS)


async def select_capacity_inputs(
    s: AsyncSession,
    *,
    device_ids: Sequence[int] | None = None,
    default_post_rate: int | None = None,
) -> list[CapacityInputs]:
    """What capacity needs of every device in scope (all when `device_ids` is None), in id
    order: select_der_facts' devices and rules, but only the columns capacity reads, as
    tuples (store/rows.py), each turned straight into a CapacityInputs (no DerFacts in
    between): the cold read of a whole fleet."""
    columns = [FACTS.c[name] for name in _CAPACITY_COLUMNS]
    base = (
        select(
            DEVICES.c.id,
            DEVICES.c.post_rate,
            FACTS.c.requested_post_rate,
            FACTS.c.profile,
            *columns,
        )
        .select_from(DEVICES.outerjoin(FACTS, FACTS.c.end_device_id == DEVICES.c.id))
        .order_by(DEVICES.c.id)
    )
    if device_ids is None:
        chunks: list[Any] = [base.where(*_scope(None, None, None))]
    else:
        ids = sorted(device_ids)
        chunks = [
            base.where(*_scope(ids[i : i + _CHUNK], None, None)) for i in range(0, len(ids), _CHUNK)
        ]
    out: list[CapacityInputs] = []
    make = capacity_inputs_of
    fallback = DEFAULT_POST_RATE
    for query in chunks:
        for row in await select_tuples(s, query):
            device_id, device_rate, requested, profile, *values = row
            if device_rate is not None:
                rate = device_rate
            elif default_post_rate is not None:
                rate = default_post_rate
            else:  # effective_post_rate: the device's, the default, what it asked for
                rate = requested
            out.append(make(device_id, values, rate or fallback, decode_profile(profile)))
    return out


async def select_fleet_ids(
    s: AsyncSession,
    *,
    group_ids: Iterable[int] | None = None,
    aggregator_id: int | None = None,
) -> list[int]:
    """The EndDevices select_der_facts reads for this scope, ids only, in id order."""
    query = select(DEVICES.c.id).where(*_scope(None, group_ids, aggregator_id))
    return [int(i) for i in (await s.execute(query.order_by(DEVICES.c.id))).scalars()]


async def select_lfdis(s: AsyncSession, device_ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    ids = list(device_ids)
    for i in range(0, len(ids), _CHUNK):
        query = select(DEVICES.c.id, DEVICES.c.lfdi).where(DEVICES.c.id.in_(ids[i : i + _CHUNK]))
        found.update({int(d): str(lfdi) for d, lfdi in (await s.execute(query)).all()})
    return found


async def select_device_setpoints(
    s: AsyncSession, since: int, until: int
) -> dict[int, list[tuple[int, int, float]]]:
    """Per device, the opModTargetW setpoints of its own dispatch controls (per-device
    programs) not cancelled and overlapping [since, until): (start, end, W), oldest first
    (a newer control supersedes an older one where they overlap)."""
    links = DispatchControlRow.__table__  # type: ignore[attr-defined]
    controls = DerControlRow.__table__  # type: ignore[attr-defined]
    query = (
        select(
            links.c.device_id,
            controls.c.start,
            controls.c.duration,
            controls.c.base,
        )
        .join(controls, controls.c.id == links.c.control_id)
        .where(
            controls.c.cancelled_at.is_(None),
            controls.c.start < until,
            controls.c.start + controls.c.duration > since,
        )
        .order_by(links.c.device_id, controls.c.creation_time, controls.c.id)
    )
    found: dict[int, list[tuple[int, int, float]]] = {}
    for device_id, start, duration, base in (await s.execute(query)).all():
        power = json.loads(base).get("opModTargetW")
        if not power:
            continue
        watts = float(power.get("value", 0)) * 10.0 ** int(power.get("multiplier", 0))
        found.setdefault(int(device_id), []).append((int(start), int(start + duration), watts))
    return found
