"""Issue 13 item 4: `csip devices import FILE` as a user runs it, next to a running server on
the same database: good lines registered (sfdi derived, aggregator and group applied), bad
lines reported with their line numbers, the same file again changes nothing, and piped output
carries no progress-bar escape codes. The running server hears of the import: the imported
device sees its group's FunctionSetAssignments over mutual TLS."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from csip.pki.identity import sfdi_from_lfdi

from support import ServerFactory

CSIP = [sys.executable, "-m", "csip.cli"]


async def csip(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CSIP,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_devices_import_from_csv(make_server: ServerFactory, tmp_path: Path) -> None:
    srv = await make_server()
    status, _ = await srv.admin("POST", "/api/aggregators", {"name": "agg-1"})
    assert status == 201
    status, group = await srv.admin(
        "POST", "/api/groups", {"description": "north", "level": "feeder"}
    )
    assert status == 201
    device = srv.pki.device_a
    plain = "A1" * 20
    with_agg = "B2" * 20
    csv_text = "\n".join(
        [
            "lfdi,sfdi,pin,aggregator,group",  # line 1
            f"{device.lfdi},{device.sfdi},111115,,north",  # 2: good, in a group
            f"{plain.lower()},,,,",  # 3: good, sfdi derived, default pin
            f"{with_agg},{sfdi_from_lfdi(with_agg)},,agg-1,{group['id']}",  # 4: good
            "XYZ,,,,",  # 5: not an LFDI
            f"{'C3' * 20},12345,,,",  # 6: sfdi of another LFDI
            f"{'D4' * 20},,123456,,",  # 7: PIN check digit wrong
            f"{'E5' * 20},,,nobody,",  # 8: no such aggregator
            f"{'F6' * 20},,,,south",  # 9: no such group
            f"{plain},,,,",  # 10: the same LFDI as line 3
            f"{'A7' * 20},,,,,extra",  # 11: too many values
            "",
        ]
    )
    path = tmp_path / "fleet.csv"
    path.write_text(csv_text)
    db = ["--db", srv.server.settings.db_url]

    code, out, err = await csip("devices", "import", str(path), *db)
    assert code == 1, (out, err)
    assert "3 created, 0 updated, 2 added to groups, 7 line(s) refused" in out
    refused = [line.split(":")[1] for line in err.splitlines() if line.startswith(str(path))]
    assert refused == ["5", "6", "7", "8", "9", "10", "11"], err
    assert "also on line 3" in err and "no group 'south'" in err
    assert "\x1b[" not in out + err, "piped: no progress bar, no escape codes"

    status, found = await srv.admin("GET", f"/api/end-devices/{plain}")
    assert status == 200 and found["sfdi"] == sfdi_from_lfdi(plain)
    status, found = await srv.admin("GET", f"/api/end-devices/{with_agg}")
    assert status == 200 and found["aggregator"] == "agg-1", found

    # the running server hears of it: the device finds its group's FSA over mutual TLS
    client = srv.client(device)
    for _ in range(50):
        edev = await client.get("/edev")
        fsa_link = edev.xml().find(".//{*}FunctionSetAssignmentsListLink")
        if fsa_link is not None:
            fsas = await client.get(fsa_link.get("href") or "")
            if f'href="/fsa/{group["id"]}"' in fsas.body.decode():
                break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the imported device never saw its group")

    # idempotent: the same file again creates and adds nothing
    code, out, err = await csip("devices", "import", str(path), *db)
    assert code == 1
    assert "0 created, 3 updated, 0 added to groups, 7 line(s) refused" in out
