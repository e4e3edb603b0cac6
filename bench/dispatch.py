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

Settlement of one event for all sites (target under 10 s) is not measured yet.

    .venv/bin/python bench/dispatch.py                       # 100,000 devices, SQLite
    .venv/bin/python bench/dispatch.py --devices 10000 --groups 100
    .venv/bin/python bench/dispatch.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/csip_bench

Set-up (not timed) writes EndDevices, group memberships and der_facts rows directly with bulk
INSERTs: what is measured is the read and the arithmetic, not 100,000 devices posting.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import insert, select

from common import log
from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.fleet import allocate, deliverable_w, reserve_percent
from csip.sep2 import schema
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.services.fleet import FleetService
from csip.services.sep2 import Sep2Service
from csip.store import Store
from csip.store import fleet as fleet_store
from csip.store.fleet import encode_profile
from csip.store.tables import AggregatorRow, EndDeviceRow
from csip.store.tables_der import DerGroupMemberRow, DerGroupRow
from csip.store.tables_fleet import DerFactsRow

NOW = 1_900_000_000
CHUNK = 5000


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


async def timed(run: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, Any]:
    """The median wall time of `repeats` runs, and the last run's result."""
    times = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


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
        made = json.dumps([args.devices, args.groups, args.seed, url])
        store = Store(url)
        if args.keep is not None and marker.exists() and marker.read_text() == made:
            log(f"reusing the database in {folder}")
        else:
            marker.unlink(missing_ok=True)
            await store.migrate()
            log(f"writing {args.devices:,} devices in {args.groups:,} groups ({store.dialect})")
            await populate(store, args.devices, args.groups, args.seed)
            marker.write_text(made)
        clock = Clock()
        clock.set(NOW)
        settings = Settings(data_dir=Path(tmp))
        sep2 = Sep2Service(
            store, settings, clock, schema.load(settings.profile), Changes(store, LocalBus(), clock)
        )
        service = FleetService(sep2)

        async def baseline() -> int:
            async with store.transaction() as s:
                return len((await s.execute(select(DerFactsRow.__table__))).all())  # type: ignore[attr-defined]

        async def read_facts() -> Any:
            async with store.transaction() as s:
                return await fleet_store.select_der_facts(s)

        async def whole_fleet() -> Any:
            return await service.capacity(program_floor=20)

        async def one_group() -> Any:
            return await service.capacity(group_id=1, program_floor=20)

        base_s, rows = await timed(baseline, args.repeats)
        read_s, fleet = await timed(read_facts, args.repeats)
        fleet_s, report = await timed(whole_fleet, args.repeats)
        group_s, group = await timed(one_group, args.repeats)

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

        alloc_s, shortfall = await timed(allocation, args.repeats)

        tracemalloc.start()
        held = await read_facts()
        memory, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del held
        await store.close()

    capacity = report.capacity
    figures = {
        "devices": args.devices,
        "groups": args.groups,
        "database": url.split(":")[0],
        "baseline_select_s": round(base_s, 3),
        "read_facts_s": round(read_s, 3),
        "fleet_capacity_forecast_s": round(fleet_s, 3),
        "ratio_to_baseline": round(fleet_s / base_s, 2) if base_s else None,
        "group_capacity_forecast_s": round(group_s, 4),
        "allocation_4h_all_groups_s": round(alloc_s, 3),
        "memory_per_device_bytes": round(memory / max(1, len(fleet))),
        "available": capacity.now.devices,
        "unavailable": len(capacity.unavailable),
        "energy_mwh_now": round(capacity.now.energy_wh / 1e6, 2),
        "power_mw_now": round(capacity.now.power_w / 1e6, 2),
        "group_devices": group.capacity.devices,
        "allocation_shortfall_mw": round(shortfall / 1e6, 2),
    }
    assert rows == args.devices
    print(f"fleet of {args.devices:,} batteries in {args.groups:,} groups ({figures['database']})")
    print(f"  baseline: SELECT of the facts rows     {base_s:8.3f} s")
    print(f"  facts read into DerFacts               {read_s:8.3f} s")
    print(
        f"  capacity now + 24 h forecast, fleet    {fleet_s:8.3f} s   "
        f"x{figures['ratio_to_baseline']} baseline   (target < 1 s)"
    )
    print(f"  capacity now + 24 h forecast, 1 group  {group_s:8.4f} s")
    print(f"  allocation of a 4 h event, all groups  {alloc_s:8.3f} s   (target < 2 s; pure)")
    print(f"  memory per device (facts in memory)    {figures['memory_per_device_bytes']:8d} B")
    print(
        f"  now: {figures['energy_mwh_now']} MWh, {figures['power_mw_now']} MW above reserve, "
        f"{capacity.now.devices:,} devices counted, {len(capacity.unavailable):,} flagged"
    )
    print("  settlement of one event: not measured yet")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
