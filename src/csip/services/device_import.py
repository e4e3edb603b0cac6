"""Bulk EndDevice pre-registration from CSV (`csip devices import FILE`).

A utility receives its fleet as a spreadsheet: one device a line, columns `lfdi`, `sfdi`
(optional: derived from the LFDI, and checked against it when given), `pin` (optional: the
configured default), `aggregator` (optional: the aggregator's name) and `group` (optional: a
group's id, description or target name). Lines are checked one by one, so a bad line is
reported with its line number and the rest still go in; the good lines are written in chunks,
each chunk one unit of work (devices and their group memberships commit together). Importing
the same file again changes nothing: a device already registered is updated in place, a
membership already there is kept.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from csip.domain.changes import MembershipChanged
from csip.domain.der import Group
from csip.errors import CsipError, InvalidValues
from csip.services.admin import AdminService, PreRegistration
from csip.services.sep2 import device_ref
from csip.store import der as der_store

__all__ = ["COLUMNS", "DeviceImport", "ImportLine", "ImportReport", "read_csv"]

COLUMNS = ("lfdi", "sfdi", "pin", "aggregator", "group")
#: Lines written per transaction.
CHUNK = 500


@dataclass(frozen=True)
class ImportLine:
    """One CSV line, as written (line: its line number in the file)."""

    line: int
    lfdi: str
    sfdi: str = ""
    pin: str = ""
    aggregator: str = ""
    group: str = ""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    #: Memberships added (a device already in its group adds none).
    joined: int = 0
    #: (line number, what is wrong), in file order.
    errors: list[tuple[int, str]] = field(default_factory=list)


def read_csv(text: str) -> tuple[list[ImportLine], list[tuple[int, str]]]:
    """The lines of a CSV with a header naming its columns (lfdi required, the rest optional,
    any order); errors for lines that cannot be lines at all."""
    reader = csv.reader(io.StringIO(text))
    errors: list[tuple[int, str]] = []
    header: list[str] | None = None
    lines: list[ImportLine] = []
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            unknown = [name for name in header if name not in COLUMNS]
            if "lfdi" not in header or unknown:
                raise InvalidValues(
                    f"line {number}: the header must name the columns "
                    f"({', '.join(COLUMNS)}; lfdi required)"
                    + (f", not {', '.join(unknown)}" if unknown else "")
                )
            continue
        if len(row) > len(header):
            errors.append((number, f"{len(row)} values for {len(header)} columns"))
            continue
        values = {name: cell.strip() for name, cell in zip(header, row, strict=False)}
        lines.append(ImportLine(line=number, **values))
    return lines, errors


def _number(value: str, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number") from None


class DeviceImport:
    def __init__(self, admin: AdminService) -> None:
        self.admin = admin
        self.changes = admin.changes
        self._groups: list[Group] | None = None

    async def _group(self, name: str) -> int:
        if self._groups is None:
            async with self.changes.unit_of_work() as tx:
                self._groups = list((await der_store.select_groups(tx.session)).values())
        groups = self._groups
        if name.isdigit():
            found = [g for g in groups if g.id == int(name)]
        else:
            found = [g for g in groups if name in (g.target, g.description)]
        if len(found) != 1:
            raise ValueError(
                f"no group {name!r}" if not found else f"{len(found)} groups are called {name!r}"
            )
        return found[0].id

    async def run(
        self,
        lines: Sequence[ImportLine],
        chunk: int = CHUNK,
        advance: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Import every good line, `chunk` lines per transaction; `advance(n)` after each."""
        self.admin.check_out_of_band()
        report = ImportReport()
        for start in range(0, len(lines), chunk):
            part = lines[start : start + chunk]
            await self._chunk(part, report)
            if advance is not None:
                advance(len(part))
        report.errors.sort()
        return report

    async def _chunk(self, lines: Iterable[ImportLine], report: ImportReport) -> None:
        checked: list[tuple[PreRegistration, str, int, int | None]] = []
        groups: dict[str, int | None] = {}
        seen: dict[str, int] = {}
        for line in lines:
            try:
                item = PreRegistration(
                    lfdi=line.lfdi,
                    sfdi=_number(line.sfdi, "sfdi"),
                    pin=_number(line.pin, "pin"),
                    aggregator=line.aggregator or None,
                )
                lfdi, sfdi, aggregator_id = await self.admin.check_item(item)
                group_id = await self._group(line.group) if line.group else None
            except (CsipError, ValueError) as exc:
                report.errors.append((line.line, _reason(exc)))
                continue
            if lfdi in seen:
                report.errors.append((line.line, f"lfdi {lfdi} is also on line {seen[lfdi]}"))
                continue
            seen[lfdi] = line.line
            checked.append((item, lfdi, sfdi, aggregator_id))
            groups[lfdi] = group_id
        if not checked:
            return
        async with self.changes.unit_of_work() as tx:
            results = await self.admin.preregister_in(tx, checked)
            by_group: dict[int, list[int]] = {}
            devices = {}
            for device, created in results:
                devices[device.id] = device
                if created:
                    report.created += 1
                else:
                    report.updated += 1
                group_id = groups.get(device.lfdi)
                if group_id is not None:
                    by_group.setdefault(group_id, []).append(device.id)
            for group_id, ids in sorted(by_group.items()):
                added = await der_store.insert_members(tx.session, group_id, ids)
                if added:
                    refs = tuple(device_ref(devices[i]) for i in added)
                    tx.record(MembershipChanged(group_id, refs))
                    report.joined += len(added)


def _reason(exc: Exception) -> str:
    return exc.detail if isinstance(exc, CsipError) else str(exc)
