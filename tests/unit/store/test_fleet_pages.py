"""An aggregator's EndDeviceList page by page (store.Store.page_end_devices), on SQLite and
PostgreSQL: its own certificate's EndDevice first, then the devices it manages in sFDI, id
order, whatever page size and wherever the own EndDevice falls in that order; `all` counts
each device once (CSIP Implementation Guide v2.1 §5.2.2, aggregator clients; the list is
read with pages of 2030.5's s and l, IEEE 2030.5-2018 §5.5)."""

from __future__ import annotations

import random

import pytest

from csip.domain.devices import EndDevice
from csip.store import Store

from support import BACKENDS

OWN = "A" * 40


def device(n: int, sfdi: int, aggregator_id: int | None, own: bool = False) -> EndDevice:
    return EndDevice(
        id=0,
        lfdi=OWN if own else f"{n:040X}",
        sfdi=sfdi,
        changed_time=0,
        registered_at=0,
        pin=1,
        aggregator_id=aggregator_id,
        aggregator_self=own,
    )


async def walk(store: Store, aggregator_id: int, size: int) -> tuple[set[int], list[str]]:
    """Every page of `size` from s=0 until one comes back short: (the `all` values, LFDIs)."""
    totals, shown, start = set(), [], 0
    while True:
        total, page = await store.page_end_devices(
            lfdi=OWN, aggregator_id=aggregator_id, start=start, limit=size
        )
        totals.add(total)
        shown += [d.lfdi for d in page]
        if len(page) < size:
            return totals, shown
        start += size


@BACKENDS
@pytest.mark.parametrize("own_in_fleet", [True, False, None], ids=["inside", "apart", "none"])
async def test_every_page_size_lists_each_device_once_in_order(
    database_url: str, own_in_fleet: bool | None
) -> None:
    store = Store(database_url)
    await store.migrate()
    try:
        aggregator = await store.create_aggregator("agg", 0)
        other = await store.create_aggregator("other", 0)
        rng = random.Random(7)
        sfdis = rng.sample(range(1, 10_000), 37)
        managed = [device(n, sfdi, aggregator.id) for n, sfdi in enumerate(sfdis, 1)]
        managed.append(device(99, sfdis[0], aggregator.id))  # an sFDI twice: id decides
        strangers = [device(200 + n, n, other.id) for n in range(5)]
        devices = managed + strangers
        if own_in_fleet is not None:  # its sFDI sorts in the middle of the fleet
            mid = sorted(sfdis)[len(sfdis) // 2]
            devices.append(device(0, mid, aggregator.id if own_in_fleet else None, own=True))
        created = await store.create_end_devices(devices)
        by_lfdi = {d.lfdi: d for d in created}
        order = sorted((by_lfdi[d.lfdi] for d in managed), key=lambda d: (d.sfdi, d.id))
        expected = ([OWN] if own_in_fleet is not None else []) + [d.lfdi for d in order]
        for size in (1, 2, 5, 10, 37, 38, 39, 40, 255):
            totals, shown = await walk(store, aggregator.id, size)
            assert totals == {len(expected)}, size
            assert shown == expected, size
    finally:
        await store.close()
