"""How OpenADR 3 objects look to each viewer: the wire rendering of a stored object for a BL
(view None) or one VEN client's view, and every VEN client's view at once.

Shared by the VTN's reads (services/vtn.py) and the OpenADR notifications decided in
services/changes.py, so both show a subscriber exactly what its reads would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from csip.openadr import rules
from csip.openadr.rules import EVENT, PROGRAM, RESOURCE, VEN, VenView
from csip.store import openadr as oadr
from csip.store.openadr import StoredObject
from csip.store.outbox import Session


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def rule_obj(obj: StoredObject) -> rules.Obj:
    return rules.Obj(
        kind=obj.kind,
        id=obj.id,
        targets=obj.targets,
        program_id=obj.program_id,
        client_id=obj.client_id,
        ven_id=obj.ven_id,
    )


def render_object(
    obj: StoredObject, view: VenView | None, asked: Sequence[str] = ()
) -> dict[str, Any]:
    """The wire object as this viewer sees it; a VEN that asked for some targets (the
    ``targets`` query) finds only those of its granted targets it asked for."""
    out: dict[str, Any] = {
        "id": obj.id,
        "createdDateTime": iso(obj.created_at),
        "modificationDateTime": iso(obj.modified_at),
        "objectType": obj.kind,
    }
    for key, value in obj.body.items():
        if not key.startswith("_"):
            out[key] = value
    if obj.kind in (PROGRAM, EVENT):
        shown = rules.shown_targets(rule_obj(obj), view)
        if view is not None and asked:
            shown = [t for t in shown if t in asked]
        if shown:
            out["targets"] = shown
        else:
            out.pop("targets", None)
    return out


@dataclass
class Views:
    """Every VEN client's view, built once per notification pass."""

    by_client: dict[str, VenView] = field(default_factory=dict)

    def of(self, client_id: str | None) -> VenView:
        return self.by_client.get(client_id or "", VenView(client_id or ""))


async def all_views(s: Session) -> Views:
    views = Views()
    vens = await oadr.query(s, VEN)
    resources = await oadr.query(s, RESOURCE)
    by_ven: dict[str, set[str]] = {}
    for r in resources:
        by_ven.setdefault(r.ven_id or "", set()).update(r.targets)
    grouped: dict[str, tuple[set[str], set[str]]] = {}
    for v in vens:
        ids, targets = grouped.setdefault(v.client_id or "", (set(), set()))
        ids.add(v.id)
        targets.update(v.targets)
        targets.update(by_ven.get(v.id, set()))
    for client_id, (ids, targets) in grouped.items():
        views.by_client[client_id] = VenView(client_id, frozenset(ids), frozenset(targets))
    return views
