"""Persistence of 2030.5 subscriptions, and the notification intents a change writes.

A change and the notifications it causes commit together: services/changes.py calls
`notify_in(session, hrefs, now)` inside the writer's unit of work (store.uow). Each intent
names the subscription and the resource; the body is rendered when it is delivered (the
resource as it is then, as 2030.5 wants), so the transaction stays small even with thousands
of subscribers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

from csip.domain.changes import DeviceRef
from csip.domain.subscriptions import Subscription
from csip.store.outbox import OutboxMessage, enqueue
from csip.store.store import Store
from csip.store.tables import EndDeviceRow
from csip.store.tables_der import Sep2SubscriptionRow

KIND = "sep2"
INTENT_TYPE = "application/vnd.csip.notify+json"


def _subscription(row: Sep2SubscriptionRow) -> Subscription:
    assert row.id is not None
    return Subscription(
        row.id,
        row.end_device_id,
        row.subscribed_resource,
        row.notification_uri,
        row.limit,
        row.encoding,
        row.level,
        row.created_at,
    )


async def notify_in(session: AsyncSession, hrefs: Sequence[str], now: float) -> int:
    """Enqueue one notification intent per subscription to any of these resources.

    Looked up 500 hrefs at a time: a membership change of 10,000 devices names 10,000
    FunctionSetAssignmentsLists, past what one statement may bind.
    """
    unique = sorted(set(hrefs))
    queued = 0
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        query = (
            select(Sep2SubscriptionRow, EndDeviceRow)
            .join(EndDeviceRow, col(EndDeviceRow.id) == col(Sep2SubscriptionRow.end_device_id))
            .where(col(Sep2SubscriptionRow.subscribed_resource).in_(chunk))
            .order_by(col(Sep2SubscriptionRow.id))
        )
        rows = (await session.execute(query)).all()
        messages = [_intent(sub, device) for sub, device in rows]
        queued += await enqueue(session, messages, now)
    return queued


async def insert_subscription(s: AsyncSession, subscription: Subscription) -> Subscription:
    row = Sep2SubscriptionRow(
        end_device_id=subscription.end_device_id,
        subscribed_resource=subscription.subscribed_resource,
        notification_uri=subscription.notification_uri,
        limit=subscription.limit,
        encoding=subscription.encoding,
        level=subscription.level,
        created_at=subscription.created_at,
    )
    s.add(row)
    await s.flush()
    return _subscription(row)


async def delete_subscription(s: AsyncSession, subscription_id: int) -> Subscription | None:
    """Delete one subscription; answers it (None if it was already gone)."""
    row = await s.get(Sep2SubscriptionRow, subscription_id)
    if row is None:
        return None
    found = _subscription(row)
    await s.delete(row)
    await s.flush()
    return found


def _intent(sub: Sep2SubscriptionRow, device: EndDeviceRow) -> OutboxMessage:
    """A notification intent: rendered at delivery, as the subscriber's device would GET it."""
    return OutboxMessage(
        kind=KIND,
        target=sub.notification_uri,
        body=json.dumps(
            {
                "subscription": sub.id,
                "resource": sub.subscribed_resource,
                "limit": sub.limit,
                "href": f"/edev/{sub.end_device_id}/sub/{sub.id}",
                "lfdi": device.lfdi,
                "sfdi": device.sfdi,
                "aggregator": device.aggregator_id,
            }
        ).encode(),
        content_type=INTENT_TYPE,
    )


async def notify_end_device_lists(
    session: AsyncSession, list_href: str, devices: Sequence[DeviceRef], now: float
) -> int:
    """Enqueue an intent for each subscription to an EndDeviceList (`list_href`) that shows
    one of these devices (added, or removed in this transaction): the subscriptions held under
    an EndDevice of the same aggregator, or under the device itself. lFDIs are looked up 500
    at a time (a bulk registration names thousands)."""
    if not devices:
        return 0
    aggregators = sorted({d.aggregator_id for d in devices if d.aggregator_id is not None})
    lfdis = sorted({d.lfdi for d in devices})
    reaches: list[ColumnElement[bool]] = [
        col(EndDeviceRow.lfdi).in_(lfdis[i : i + 500]) for i in range(0, len(lfdis), 500)
    ]
    if aggregators:
        reaches.append(col(EndDeviceRow.aggregator_id).in_(aggregators))
    found: dict[int, OutboxMessage] = {}
    for reach in reaches:
        query = (
            select(Sep2SubscriptionRow, EndDeviceRow)
            .join(EndDeviceRow, col(EndDeviceRow.id) == col(Sep2SubscriptionRow.end_device_id))
            .where(col(Sep2SubscriptionRow.subscribed_resource) == list_href, reach)
        )
        for sub, device in (await session.execute(query)).all():
            found.setdefault(sub.id or 0, _intent(sub, device))
    return await enqueue(session, [found[k] for k in sorted(found)], now)


class SubscriptionStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, subscription: Subscription) -> Subscription:
        async with self.store.transaction() as s:
            return await insert_subscription(s, subscription)

    async def get(self, subscription_id: int) -> Subscription | None:
        async with self.store.transaction() as s:
            row = await s.get(Sep2SubscriptionRow, subscription_id)
            return None if row is None else _subscription(row)

    async def page(self, device_id: int, start: int, limit: int) -> tuple[int, list[Subscription]]:
        async with self.store.transaction() as s:
            where = col(Sep2SubscriptionRow.end_device_id) == device_id
            total = (
                await s.execute(select(func.count()).select_from(Sep2SubscriptionRow).where(where))
            ).scalar_one()
            rows = await s.scalars(
                select(Sep2SubscriptionRow)
                .where(where)
                .order_by(col(Sep2SubscriptionRow.id))
                .offset(start)
                .limit(limit)
            )
            return int(total), [_subscription(r) for r in rows]

    async def of_device(self, device_id: int) -> list[Subscription]:
        return (await self.page(device_id, 0, 10**9))[1]

    async def ids(self) -> set[int]:
        async with self.store.transaction() as s:
            found = await s.scalars(select(col(Sep2SubscriptionRow.id)))
            return {i for i in found if i is not None}

    async def delete(self, subscription_id: int) -> None:
        async with self.store.transaction() as s:
            await delete_subscription(s, subscription_id)
