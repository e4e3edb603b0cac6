"""Issue 13 item 3: /metrics after real traffic. A device polls over mutual TLS (some polls
answered by the fast lane), a BL creates a program and an event through the VTN that the
engine turns into DERControls, a webhook subscriber refuses its notification; a scrape with
the admin token shows every one of those counters moved, and route labels are patterns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from vtn_support import WebhookReceiver

from conftest import Vtn

from helpers import register
from support import Running

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def scrape(srv: Running, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {srv.admin_token if token is None else token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(srv.admin_base + "/metrics", headers=headers) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def ok(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status, data = await srv.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, data)
    return data


async def test_metrics_move_with_real_traffic(vtn: Vtn, webhook: WebhookReceiver) -> None:
    srv = vtn.running
    assert (await scrape(srv, token="wrong"))[0] == 401, "the admin token guards /metrics"
    status, content_type, text = await scrape(srv)
    assert status == 200 and content_type.startswith("text/plain")
    before = parse(text)

    # a device registers and polls over mutual TLS: the repeats come from the fast lane
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    for _ in range(5):
        assert (await client.get("/dcap")).status == 200
        assert (await client.get(href)).status == 200
    assert (await client.get("/no/such/path")).status == 404

    # the VTN: a BL's program and event, planned by the engine for an enrolled group, and
    # a subscriber whose webhook refuses (a delivery failure, retried)
    bl = await vtn.client("utility", "bl")
    program = await bl.post(
        "/programs",
        {
            "programName": "peak",
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "DISPATCH_SETPOINT",
                    "units": "KW",
                }
            ],
        },
    )
    assert program.status == 201
    program_id = program.body["id"]
    group = await ok(srv, "POST", "/api/groups", {"description": "north", "level": "feeder"})
    await ok(srv, "PUT", f"/api/groups/{group['id']}/target", {"target": "feeder-north"})
    await ok(srv, "PUT", f"/api/groups/{group['id']}/members/{device.lfdi}")
    await ok(srv, "POST", f"/api/engine/programs/{program_id}/enrollments", {"group": group["id"]})
    subscription = await bl.post(
        "/subscriptions",
        {
            "clientName": "monitor",
            "programID": program_id,
            "objectOperations": [
                {
                    "objects": ["EVENT"],
                    "operations": ["CREATE"],
                    "callbackUrl": webhook.url("/events"),
                }
            ],
        },
    )
    assert subscription.status == 201
    webhook.status = 503
    now = int((await ok(srv, "GET", "/api/clock"))["now"])
    event = await bl.post(
        "/events",
        {
            "programID": program_id,
            "intervalPeriod": {"start": iso(now + 600), "duration": "PT30M"},
            "intervals": [{"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [2.0]}]}],
        },
    )
    assert event.status == 201, event.body
    assert (await bl.get("/events", {"programID": program_id})).status == 200
    for _ in range(100):  # the outbox delivers in the background
        if webhook.refused:
            break
        await asyncio.sleep(0.1)
    assert webhook.refused >= 1

    after = parse((await scrape(srv))[2])

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "csip_http_requests_total"
    assert moved(requests, face="sep2", route="/dcap", status="200") == 5
    assert moved(requests, face="sep2", route=r"/edev/{id}", status="200") >= 5
    assert moved(requests, face="sep2", route="(unmatched)", status="404") == 1
    assert moved(requests, face="sep2", route="/edev", status="201") == 1
    assert moved(requests, face="vtn", route="/openadr3/3.1.0/{collection}", status="201") >= 3
    assert moved(requests, face="admin", route="/api/clock", status="200") == 1
    assert (
        moved(
            "csip_http_request_duration_seconds_count",
            face="vtn",
            route="/openadr3/3.1.0/{collection}",
        )
        >= 4
    )
    assert moved("csip_fast_lane_answers_total") >= 4, "repeated polls answered by the lane"
    assert moved("csip_render_cache_hits_total") + moved("csip_render_cache_misses_total") > 0
    assert value(after, "csip_sep2_clients_seen") == 1
    assert moved("csip_engine_events_total", operation="written") == 1
    assert moved("csip_engine_controls_total", operation="published") >= 1
    assert moved("csip_outbox_delivery_failures_total", kind="webhook") >= 1
    assert value(after, "csip_outbox_pending", kind="webhook") >= 1, "retried later"
    assert value(after, "csip_outbox_oldest_pending_seconds", kind="webhook") >= 0

    # bounded labels: every route label is a route's pattern, never a raw path
    routes = {dict(labels).get("route") for (name, labels) in after if name == requests}
    assert routes and not any(r and any(ch.isdigit() for ch in r.split("/")[-1]) for r in routes)
    assert href not in routes and "/no/such/path" not in routes
