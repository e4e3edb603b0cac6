"""Fleet figures for the customer battery program (issue 12): 100,000 batteries with typed
facts in 1,000 groups. Printed, never asserted.

* capacity now + 24 h forecast for the whole fleet (target under 1 s), split into reading the
  facts and summing them, beside a same-run **baseline**: a bare SELECT of the same der_facts
  rows, tuples only (what reading the fleet costs at the least);
* capacity of one group of 100 devices;
* reserve-aware allocation of one 4-hour event across all 1,000 groups (target under 2 s):
  deliverable power per device and the pro-rata split (pure; writing the controls is the
  program engine's and not measured here yet);
* memory per device of the facts held in memory (tracemalloc).

* settlement of one event for all sites (target under 10 s): a 4-hour event (17:00-21:00
  local) created through the VTN for a program enrolled at a group above the 1,000 feeders,
  settled from ~15 days of hourly total-W readings per site (10 weekdays of baseline, across
  a daylight-saving change), 1 % of sites opted out.

Capacity is printed cold (the first query: the fleet read into memory) and warm (the same
query again, and again after 1 % of the devices posted), each with wall and CPU seconds: the
machine is shared, and CPU time is the steadier figure.

    .venv/bin/python bench/dispatch.py                       # 100,000 devices, SQLite
    .venv/bin/python bench/dispatch.py --devices 10000 --groups 100
    .venv/bin/python bench/dispatch.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/csip_bench

Set-up (not timed) writes EndDevices, group memberships, der_facts rows, MirrorUsagePoints
and readings directly with bulk INSERTs (the readings generated inside the database): what is
measured is the read and the arithmetic, not 100,000 devices posting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import insert, select, text, update

from common import log
from csip.app import build
from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.fleet import allocate, deliverable_w, reserve_percent
from csip.openadr.rules import EVENT, PROGRAM, Principal
from csip.sep2 import schema
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.services.fleet import FleetService
from csip.services.sep2 import Sep2Service
from csip.store import Store
from csip.store import engine as engine_store
from csip.store import fleet as fleet_store
from csip.store.fleet import encode_profile
from csip.store.tables import AggregatorRow, EndDeviceRow
from csip.store.tables_der import DerGroupMemberRow, DerGroupRow, DerResponseRow
from csip.store.tables_fleet import DerFactsRow
from csip.store.tables_telemetry import MirrorMeterReadingRow, MirrorUsagePointRow

NOW = 1_900_000_000  # 2030-03-17 10:46 in Los Angeles (the default zone)
CHUNK = 5000
#: The settled event: Monday 2030-03-18 17:00-21:00 PDT; readings hourly from Monday
#: 2030-03-04 00:00 PST (the change to PDT on 2030-03-10 falls in the baseline).
EVENT_START = 1_900_108_800
EVENT_END = EVENT_START + 4 * 3600
READINGS_FROM = 1_898_841_600
BL = Principal("bench", "bl", frozenset({"read_all", "write_programs", "write_events"}))
SETUP = "3"  # bump when the set-up changes: a kept database is written again


def _profile(rng: random.Random) -> list[float]:
    """A battery that charges from PV around midday and discharges in the evening."""
    solar = rng.uniform(1000, 3000)
    evening = rng.uniform(500, 2500)
    out = []
    for hour in range(24):
        if 9 <= hour < 15:
            out.append(-solar * math.sin((hour - 8) / 7 * math.pi))
        elif 17 <= hour < 22:
            out.append(evening)
        else:
            out.append(math.nan if rng.random() < 0.3 else rng.uniform(-100, 100))
    return out


async def populate(store: Store, devices: int, groups: int, seed: int) -> None:
    rng = random.Random(seed)
    async with store.transaction() as s:
        await s.execute(insert(AggregatorRow).values(name="bench", created_at=NOW))
        for g in range(groups):
            await s.execute(
                insert(DerGroupRow).values(
                    mrid=f"{g:032X}", description=f"feeder {g}", created_at=NOW
                )
            )
    for start in range(0, devices, CHUNK):
        ids = range(start + 1, min(devices, start + CHUNK) + 1)
        rows: list[dict[str, Any]] = []
        facts: list[dict[str, Any]] = []
        members: list[dict[str, Any]] = []
        for i in ids:
            rows.append(
                {
                    "id": i,
                    "lfdi": f"{i:040X}",
                    "sfdi": i,
                    "changed_time": NOW,
                    "registered_at": NOW,
                    "pin": 111115,
                    "enabled": True,
                    "aggregator_id": 1 if i % 2 else None,
                    "in_band": False,
                    "aggregator_self": False,
                }
            )
            wh = rng.choice((5000, 10_000, 13_500, 20_000))
            w = rng.choice((3000, 5000, 7000))
            facts.append(
                {
                    "end_device_id": i,
                    "rtg_max_w": w,
                    "rtg_max_wh": wh,
                    "rtg_max_charge_rate_w": w,
                    "rtg_max_discharge_rate_w": w,
                    "capability_at": NOW - 86_400,
                    "set_max_w": w,
                    "set_max_wh": wh * 0.95,
                    "settings_at": NOW - 86_400,
                    "state_of_charge": rng.uniform(10, 100),
                    "storage_mode": 1,
                    "operational_mode": 2,
                    "status_at": NOW - rng.randint(0, 900),
                    "reserve_percent": rng.choice((None, 10.0, 20.0, 30.0)),
                    "availability_at": NOW - 3600,
                    "w": rng.uniform(-3000, 3000),
                    "w_at": NOW - 60,
                    "soc": rng.uniform(10, 100),
                    "soc_at": NOW - rng.randint(0, 700),  # some are stale
                    "requested_post_rate": 300,
                    "profile": encode_profile(_profile(rng)),
                    "profile_hour": NOW // 3600,
                }
            )
            members.append({"group_id": (i % groups) + 1, "end_device_id": i})
        async with store.transaction() as s:
            await s.execute(insert(EndDeviceRow), rows)
            await s.execute(insert(DerFactsRow), facts)
            await s.execute(insert(DerGroupMemberRow), members)
        log(f"{ids[-1]:,} devices written")


async def populate_settlement(app: Any, devices: int, groups: int) -> str:
    """A program enrolled at a group above every feeder, one event through the VTN, a total-W
    MirrorUsagePoint per site with hourly readings (generated by the database), 1 % opted
    out. Answers the event's id."""
    store = app.store
    async with store.transaction() as s:
        await s.execute(
            insert(DerGroupRow).values(
                id=groups + 1, mrid=f"{groups + 1:032X}", description="program", created_at=NOW
            )
        )
        await s.execute(
            update(DerGroupRow).where(DerGroupRow.id <= groups).values(parent_id=groups + 1)
        )  # type: ignore[arg-type]
    for start in range(0, devices, CHUNK):
        ids = range(start + 1, min(devices, start + CHUNK) + 1)
        async with store.transaction() as s:
            await s.execute(
                insert(MirrorUsagePointRow),
                [
                    {
                        "id": i,
                        "end_device_id": i,
                        "mrid": f"{i:032X}",
                        "role_flags": 0x49,
                        "service_category_kind": 0,
                        "status": 1,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for i in ids
                ],
            )
            await s.execute(
                insert(MirrorMeterReadingRow),
                [
                    {
                        "id": i,
                        "mup_id": i,
                        "mrid": f"{i:032X}",
                        "uom": 38,
                        "power_of_ten_multiplier": 0,
                        "kind": 37,
                        "phase": 0,
                    }
                    for i in ids
                ],
            )
    hours = (EVENT_END - READINGS_FROM) // 3600
    log(f"generating {devices * hours:,} hourly readings in the database")
    # W: a site-dependent export during the event, noise around zero before
    generate = text(
        "INSERT INTO reading (mmr_id, end_device_id, value, power_of_ten_multiplier, start, "
        "duration, received_at) "
        "WITH RECURSIVE h(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM h WHERE k < :n - 1) "
        "SELECT m.id, m.id, CASE WHEN :from + 3600 * h.k >= :ev THEN 1000 + (m.id * 37) % 3000 "
        "ELSE (m.id * 7919 + h.k * 104729) % 2001 - 1000 END, 0, :from + 3600 * h.k, 3600, "
        ":from + 3600 * h.k + 3600 FROM mirror_meter_reading m CROSS JOIN h "
        "WHERE m.id >= :lo AND m.id < :hi"
    )
    for low in range(1, devices + 1, 10_000):
        async with store.transaction() as s:
            await s.execute(
                generate,
                {
                    "n": hours,
                    "from": READINGS_FROM,
                    "ev": EVENT_START,
                    "lo": low,
                    "hi": low + 10_000,
                },
            )
        log(f"readings of {min(devices, low + 9999):,} sites written")
    app.clock.set(NOW)
    program = json.loads(await app.vtn.create(BL, PROGRAM, b'{"programName": "cbes"}'))
    await app.engine.enroll(program["id"], groups + 1)
    descriptor = {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "DISPATCH_SETPOINT"}
    event = json.loads(
        await app.vtn.create(
            BL,
            EVENT,
            json.dumps(
                {
                    "programID": program["id"],
                    "payloadDescriptors": [{**descriptor, "units": "KW"}],
                    "intervalPeriod": {
                        "start": datetime.fromtimestamp(EVENT_START, UTC).isoformat(),
                        "duration": "PT4H",
                    },
                    "intervals": [
                        {"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [50000]}]}
                    ],
                }
            ).encode(),
        )
    )
    async with store.transaction() as s:
        (link,) = await engine_store.select_engine_controls(s, event["id"])
        await s.execute(
            insert(DerResponseRow),
            [
                {
                    "control_id": link.control.id,
                    "end_device_id": i,
                    "lfdi": f"{i:040X}",
                    "status": 4,
                    "created_date_time": NOW,
                    "received_at": NOW,
                }
                for i in range(1, devices + 1, 100)
            ],
        )
    return str(event["id"])


def cpu() -> float:
    return time.process_time()


async def timed(run: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, float, Any]:
    """The median wall and CPU seconds of `repeats` runs, and the last run's result."""
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        started, used = time.perf_counter(), cpu()
        result = await run()
        walls.append(time.perf_counter() - started)
        cpus.append(cpu() - used)
    return statistics.median(walls), statistics.median(cpus), result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--db", default=None, help="a fresh database URL (default: SQLite)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a directory for the SQLite database, kept and reused by the next run with the "
        "same --devices/--groups/--seed (set-up takes minutes at 100,000 devices)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="csip-dispatch-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        url = args.db or f"sqlite+aiosqlite:///{folder / 'csip.db'}"
        marker = folder / "populated.json"
        made = json.dumps([SETUP, args.devices, args.groups, args.seed, url])
        clock = Clock()
        clock.set(NOW)
        app = build(Settings(data_dir=folder, db=url), clock)
        store = app.store
        if args.keep is not None and marker.exists() and marker.read_text().startswith(made):
            log(f"reusing the database in {folder}")
            event_id = json.loads(marker.read_text())[-1]
        else:
            marker.unlink(missing_ok=True)
            await store.migrate()
            log(f"writing {args.devices:,} devices in {args.groups:,} groups ({store.dialect})")
            await populate(store, args.devices, args.groups, args.seed)
            event_id = await populate_settlement(app, args.devices, args.groups)
            marker.write_text(made[:-1] + f", {json.dumps(event_id)}]")
        settings = Settings(data_dir=folder, db=url)

        def fresh_service() -> FleetService:
            sep2 = Sep2Service(
                store,
                settings,
                clock,
                schema.load(settings.profile),
                Changes(store, LocalBus(), clock),
            )
            return FleetService(sep2)

        async def baseline() -> int:
            async with store.transaction() as s:
                return len((await s.execute(select(DerFactsRow.__table__))).all())  # type: ignore[attr-defined]

        async def read_facts() -> Any:
            async with store.transaction() as s:
                return await fleet_store.select_der_facts(s)

        base = await timed(baseline, args.repeats)
        read = await timed(read_facts, args.repeats)
        fleet = read[2]

        # cold: a new service each time (nothing in memory); warm: one service, asked again
        async def cold() -> Any:
            return await fresh_service().capacity(program_floor=20)

        cold_s = await timed(cold, args.repeats)
        service = fresh_service()
        await service.capacity(program_floor=20)
        warm_s = await timed(lambda: service.capacity(program_floor=20), args.repeats)
        report = warm_s[2]
        posted = list(range(1, args.devices + 1, 100))  # 1 % of the devices posted since

        async def after_posts() -> Any:
            service.sep2.bus.deliver([f"facts:{i}" for i in posted])
            return await service.capacity(program_floor=20)

        churn_s = await timed(after_posts, args.repeats)
        group_s = await timed(lambda: service.capacity(group_id=1, program_floor=20), args.repeats)
        group = group_s[2]

        by_group: dict[int, list[Any]] = {}
        for facts in fleet:
            by_group.setdefault(facts.device_id % args.groups, []).append(facts)

        async def allocation() -> int:
            shortfall = 0
            for members in by_group.values():
                can = {
                    f.device_id: deliverable_w(f, reserve_percent(f, 20.0), 4 * 3600, NOW)
                    for f in members
                }
                shortfall += allocate(200_000, can).shortfall_w
            return shortfall

        alloc_s = await timed(allocation, args.repeats)
        shortfall = alloc_s[2]

        tracemalloc.start()
        held = await read_facts()
        facts_memory, _ = tracemalloc.get_traced_memory()
        del held
        tracemalloc.stop()
        tracemalloc.start()
        measured = fresh_service()
        await measured.capacity(program_floor=20)
        cache_memory, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del measured

        clock.set(EVENT_END + 3600)
        settle_s = await timed(lambda: app.settlement.settle(event_id), max(1, args.repeats - 1))
        settled = settle_s[2]
        await store.close()

    capacity = report.capacity
    figures = {
        "devices": args.devices,
        "groups": args.groups,
        "database": url.split(":")[0],
        "baseline_select_s": round(base[0], 3),
        "baseline_select_cpu_s": round(base[1], 3),
        "read_facts_s": round(read[0], 3),
        "fleet_capacity_forecast_cold_s": round(cold_s[0], 3),
        "fleet_capacity_forecast_cold_cpu_s": round(cold_s[1], 3),
        "fleet_capacity_forecast_s": round(warm_s[0], 3),
        "fleet_capacity_forecast_cpu_s": round(warm_s[1], 3),
        "ratio_to_baseline": round(warm_s[0] / base[0], 2) if base[0] else None,
        "cpu_ratio_to_baseline": round(warm_s[1] / base[1], 2) if base[1] else None,
        "fleet_capacity_after_1pct_posted_s": round(churn_s[0], 3),
        "fleet_capacity_after_1pct_posted_cpu_s": round(churn_s[1], 3),
        "group_capacity_forecast_s": round(group_s[0], 4),
        "allocation_4h_all_groups_s": round(alloc_s[0], 3),
        "allocation_4h_all_groups_cpu_s": round(alloc_s[1], 3),
        "settlement_all_sites_s": round(settle_s[0], 3),
        "settlement_all_sites_cpu_s": round(settle_s[1], 3),
        "settled_sites": len(settled.sites),
        "settled_mwh_above_baseline": round(settled.total_kwh / 1000, 3),
        "memory_per_device_derfacts_bytes": round(facts_memory / max(1, len(fleet))),
        "memory_per_device_capacity_cache_bytes": round(cache_memory / max(1, len(fleet))),
        "available": capacity.now.devices,
        "unavailable": len(capacity.unavailable),
        "energy_mwh_now": round(capacity.now.energy_wh / 1e6, 2),
        "power_mw_now": round(capacity.now.power_w / 1e6, 2),
        "group_devices": group.capacity.devices,
        "allocation_shortfall_mw": round(shortfall / 1e6, 2),
    }
    assert base[2] == args.devices
    print(f"fleet of {args.devices:,} batteries in {args.groups:,} groups ({figures['database']})")
    print("                                          wall s    CPU s")
    print(f"  baseline: SELECT of the facts rows     {base[0]:8.3f} {base[1]:8.3f}")
    print(f"  facts read into DerFacts               {read[0]:8.3f} {read[1]:8.3f}")
    print(
        f"  capacity + 24 h forecast, cold         {cold_s[0]:8.3f} {cold_s[1]:8.3f}   "
        "(first query: the fleet read into memory)"
    )
    print(
        f"  capacity + 24 h forecast, warm         {warm_s[0]:8.3f} {warm_s[1]:8.3f}   "
        f"x{figures['ratio_to_baseline']} baseline (CPU x{figures['cpu_ratio_to_baseline']})"
        "   (target < 1 s)"
    )
    print(f"  ... warm, 1 % of devices posted since  {churn_s[0]:8.3f} {churn_s[1]:8.3f}")
    print(f"  capacity + 24 h forecast, 1 group      {group_s[0]:8.4f} {group_s[1]:8.4f}")
    print(
        f"  allocation of a 4 h event, all groups  {alloc_s[0]:8.3f} {alloc_s[1]:8.3f}   "
        "(target < 2 s; pure)"
    )
    print(
        f"  settlement of one event, all sites     {settle_s[0]:8.3f} {settle_s[1]:8.3f}   "
        f"(target < 10 s; {len(settled.sites):,} sites)"
    )
    print(
        f"  memory per device: DerFacts {figures['memory_per_device_derfacts_bytes']} B, "
        f"capacity cache (inputs + forecast) {figures['memory_per_device_capacity_cache_bytes']} B"
    )
    print(
        f"  now: {figures['energy_mwh_now']} MWh, {figures['power_mw_now']} MW above reserve, "
        f"{capacity.now.devices:,} devices counted, {len(capacity.unavailable):,} flagged; "
        f"settled {figures['settled_mwh_above_baseline']} MWh above baseline"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
