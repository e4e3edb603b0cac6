"""Settlement of one event (issue 12 item 7): what each site delivered above its baseline,
what each aggregator reported, and the program's total.

Sites are the EndDevices of the 2030.5 groups the event reached (its groups and every group
below them); their energy comes from their metered total active power (MirrorUsagePoint W
readings), the baseline from the same local hours on the 10 most recent non-event weekdays
(`domain.settlement`). A site whose device answered the event with an opt-out status is listed
with zero. Aggregators settle from their VENs' own reports on the event: Σ(BASELINE - USAGE)
over their intervals and resources, in kWh (units from the report's payloadDescriptors: KWH,
the default, or WH). Every figure uses the sites' sign: positive is energy delivered.

One event may reach 100,000 sites: the sites come from one query over the groups, and the
readings from one streamed query per counted stretch of hours (the event's clock hours on
the event day and on the possible baseline days), each site's energy added up as it streams
(`domain.settlement.FleetSettlement`, the same figures as settle_site).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from csip.domain.groups import descendants
from csip.domain.settlement import BASELINE_DAYS, FleetSettlement, SiteSettlement, settle_site
from csip.errors import NotFound
from csip.openadr import convert
from csip.openadr.rules import EVENT, PROGRAM, REPORT
from csip.services.programs import ProgramService
from csip.store import der as der_store
from csip.store import dispatch as dispatch_store
from csip.store import engine as engine_store
from csip.store import openadr as oadr
from csip.store import settlement as settlement_store

#: DERControlResponse statuses that mean the customer did not take part (IEEE 2030.5 Table 27):
#: opted out, chose not to participate, completed with no participation (previous opt-out).
OPT_OUT = frozenset({4, 5, 10})
#: How far back readings are read for a baseline: 10 weekdays with event days skipped.
HISTORY = timedelta(days=BASELINE_DAYS * 3)
UNITS_KWH = {"KWH": 1.0, "WH": 0.001}


@dataclass(frozen=True, slots=True)
class AggregatorSettlement:
    """From a VEN's USAGE and BASELINE (consumption, kWh), turned to the sites' sign:
    delivered = -USAGE, baseline = -BASELINE, so above baseline = BASELINE - USAGE."""

    client_name: str
    report_id: str
    usage_kwh: float
    reported_baseline_kwh: float

    @property
    def delivered_kwh(self) -> float:
        return -self.usage_kwh

    @property
    def baseline_kwh(self) -> float:
        return -self.reported_baseline_kwh

    @property
    def above_baseline_kwh(self) -> float:
        return max(0.0, self.reported_baseline_kwh - self.usage_kwh)


@dataclass(frozen=True, slots=True)
class Settlement:
    event_id: str
    program_id: str
    start: int
    end: int
    sites: tuple[tuple[str, SiteSettlement], ...]  # (lfdi, settlement)
    aggregators: tuple[AggregatorSettlement, ...]

    @property
    def total_kwh(self) -> float:
        sites = sum(s.above_baseline_wh for _, s in self.sites) / 1000
        return sites + sum(a.above_baseline_kwh for a in self.aggregators)

    def json(self) -> dict[str, Any]:
        return {
            "event": self.event_id,
            "program": self.program_id,
            "start": self.start,
            "end": self.end,
            "total_above_baseline_kwh": round(self.total_kwh, 6),
            "sites": [
                {
                    "lfdi": lfdi,
                    "delivered_kwh": round(s.delivered_wh / 1000, 6),
                    "baseline_kwh": round(s.baseline_wh / 1000, 6),
                    "above_baseline_kwh": round(s.above_baseline_wh / 1000, 6),
                    "baseline_days": s.days_used,
                    "short_history": s.short_history,
                    "opted_out": s.opted_out,
                }
                for lfdi, s in self.sites
            ],
            "aggregators": [
                {
                    "client_name": a.client_name,
                    "report": a.report_id,
                    "delivered_kwh": round(a.delivered_kwh, 6),
                    "baseline_kwh": round(a.baseline_kwh, 6),
                    "above_baseline_kwh": round(a.above_baseline_kwh, 6),
                }
                for a in self.aggregators
            ],
        }

    def csv(self) -> str:
        """One row per site and per aggregator, then the program's total."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "kind",
                "id",
                "delivered_kwh",
                "baseline_kwh",
                "above_baseline_kwh",
                "baseline_days",
                "short_history",
                "opted_out",
            ]
        )
        for site in self.json()["sites"]:
            writer.writerow(
                [
                    "site",
                    site["lfdi"],
                    f"{site['delivered_kwh']:.3f}",
                    f"{site['baseline_kwh']:.3f}",
                    f"{site['above_baseline_kwh']:.3f}",
                    site["baseline_days"],
                    str(site["short_history"]).lower(),
                    str(site["opted_out"]).lower(),
                ]
            )
        for agg in self.json()["aggregators"]:
            writer.writerow(
                [
                    "aggregator",
                    agg["client_name"],
                    f"{agg['delivered_kwh']:.3f}",
                    f"{agg['baseline_kwh']:.3f}",
                    f"{agg['above_baseline_kwh']:.3f}",
                    "",
                    "",
                    "",
                ]
            )
        writer.writerow(["program", self.program_id, "", "", f"{self.total_kwh:.3f}", "", "", ""])
        return out.getvalue()


class SettlementService:
    def __init__(self, programs: ProgramService) -> None:
        self.programs = programs
        self.store = programs.sep2.store
        self.clock = programs.clock
        self.zone = programs.sep2.settings.tz

    async def settle(self, event_id: str) -> Settlement:
        now = self.clock.now_int()
        async with self.store.transaction() as s:
            event_obj = await oadr.get(s, EVENT, event_id)
            if event_obj is None:
                raise NotFound(f"no event {event_id!r} (a deleted event did not happen)")
            program_obj = await oadr.get(s, PROGRAM, event_obj.program_id or "")
            program_body = program_obj.body if program_obj is not None else None
            event = convert.event(event_obj.body | {"id": event_id}, program_body, now)
            if event.start is None or event.end is None:
                raise NotFound(f"event {event_id!r} has no intervals")
            links = await engine_store.select_engine_controls(s, event_id)
            # per-device programs: each battery answered its own control (services/dispatch.py)
            answered = [link.control.id for link in links]
            answered += [
                c.control.id for c in await dispatch_store.select_device_controls(s, event_id)
            ]
            group_ids = {link.group_id for link in links}
            group_ids |= {m.group_id for m in await engine_store.select_mappings(s, event_id)}
            days = await self._event_days(s, event_obj.program_id or "", event_id, program_body)
            reports = await oadr.query(s, REPORT, event_id=event_id)
            # the groups the event reached and every group below them (a deleted one: its
            # devices are no longer the program's)
            groups = await der_store.select_groups(s)
            below: set[int] = set()
            for group_id in group_ids:
                below |= descendants(groups, group_id)
            since = int((datetime.fromtimestamp(event.start, self.zone) - HISTORY).timestamp())
            sites = await settlement_store.select_sites(s, below)
            meters = await settlement_store.select_power_meters(s, below, since, event.end)
            answers = await settlement_store.select_response_statuses(s, answered)
            fleet = FleetSettlement(event.start, event.end, days, self.zone, since)
            for low, high in fleet.windows:
                async for chunk in settlement_store.stream_power_readings(s, below, low, high):
                    fleet.feed(chunk)
                fleet.end_window()
            by_site: dict[int, list[tuple[int, int | None]]] = {}
            for device_id, meter, first in meters:
                by_site.setdefault(device_id, []).append((meter, first))
            # a site with several total-W meters: their readings interleave, settle_site
            several = sorted(d for d, found in by_site.items() if len(found) > 1)
            readings = await settlement_store.select_power_readings(s, several, since, event.end)
        settled = []
        for device_id, lfdi in sites:
            opted_out = bool(answers.get(device_id, set()) & OPT_OUT)
            found = by_site.get(device_id, ())
            if len(found) > 1:
                site = settle_site(
                    device_id,
                    readings[device_id],
                    event.start,
                    event.end,
                    days,
                    self.zone,
                    opted_out=opted_out,
                )
            elif found:
                ((meter, first),) = found
                site = fleet.site(device_id, meter, first, opted_out)
            else:
                site = fleet.site(device_id, None, None, opted_out)
            settled.append((lfdi, site))
        sites_settled = tuple(settled)
        aggregators = tuple(
            a for a in (_from_report(r.id, r.name or "", r.body) for r in reports) if a is not None
        )
        return Settlement(
            event_id, event.program_id, event.start, event.end, sites_settled, aggregators
        )

    async def _event_days(
        self, s: Any, program_id: str, event_id: str, program_body: Any
    ) -> set[date]:
        """The local days the program's other events touched: not baseline days."""
        now = self.clock.now_int()
        days: set[date] = set()
        for other in await oadr.query(s, EVENT, program_id=program_id):
            if other.id == event_id:
                continue
            event = convert.event(other.body, program_body, now)
            if event.start is None or event.end is None:
                continue
            day = datetime.fromtimestamp(event.start, self.zone).date()
            last = datetime.fromtimestamp(event.end - 1, self.zone).date()
            while day <= last:
                days.add(day)
                day += timedelta(days=1)
        return days


def _from_report(
    report_id: str, client_name: str, body: dict[str, Any]
) -> AggregatorSettlement | None:
    """A VEN's report with USAGE and BASELINE payloads, in kWh; None when it has neither."""
    scale = {
        d.get("payloadType"): UNITS_KWH.get(str(d.get("units") or "KWH").upper())
        for d in body.get("payloadDescriptors") or ()
    }
    totals = {"USAGE": 0.0, "BASELINE": 0.0}
    seen = False
    for resource in body.get("resources") or ():
        for interval in resource.get("intervals") or ():
            for payload in interval.get("payloads") or ():
                kind = payload.get("type")
                if kind not in totals:
                    continue
                factor = scale.get(kind, 1.0)
                if factor is None:
                    continue  # units that are not energy cannot settle
                numbers = [v for v in payload.get("values") or () if isinstance(v, int | float)]
                totals[kind] += sum(numbers) * factor
                seen = True
    if not seen:
        return None
    return AggregatorSettlement(client_name, report_id, totals["USAGE"], totals["BASELINE"])
