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

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

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
        messages = [
            OutboxMessage(
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
            for sub, device in (await session.execute(query)).all()
        ]
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
