"""The conformance harness end to end: a small device-mode campaign against scripted devices
(real processes over mutual TLS), and server mode against csip itself."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from csip.conformance import procedures as catalogue
from csip.conformance import results
from csip.conformance.admin import CsipAdmin
from csip.conformance.lab import load_lab
from csip.conformance.runner import run_lab
from csip.conformance.servermode import ServerTarget, run_server_mode
from csip.pki.identity import sfdi_from_lfdi

from support import Pki, ServerFactory

DEVICE = Path(__file__).with_name("scripted_device.py")
NA = "not-applicable"

#: A fast event procedure for the test (the catalogue's own wait tens of seconds).
FAST_EVENT = """\
id = "TEST-001"
title = "fast event"
side = "client"
clause = "IEEE 2030.5-2018 10.10.3"
summary = "one control, a few seconds long: Received, Started, Completed"

[[preconditions.programs]]
name = "p1"
primacy = 10

[[preconditions.controls]]
name = "c1"
program = "p1"
start = 4
duration = 3
base = { opModMaxLimW = 5000 }

[[expect]]
id = "received"
description = "answers Received"
kind = "response"
method = "POST"
control = "c1"
status = [1]
within = 6

[[expect]]
id = "started"
description = "answers Started at the start"
kind = "response"
method = "POST"
control = "c1"
status = [2]
after = 4
within = 4
tolerance = 3

[[expect]]
id = "completed"
description = "answers Completed at the end"
kind = "response"
method = "POST"
control = "c1"
status = [3]
after = 7
within = 7
tolerance = 3
"""


#: A subscribing device hears of a new control by Notification.
FAST_NOTIFICATION = """\
id = "TEST-002"
title = "fast notification"
side = "client"
clause = "IEEE 2030.5-2018 10.8"
summary = "subscribes, accepts the notification of a new control, answers Received"

[applies_to]
classes = ["storage"]
function_sets = ["DER", "Subscription"]

[[preconditions.programs]]
name = "p1"
primacy = 10

[[steps]]
name = "event"
at = 2
action = "create-control"
control = { name = "c1", program = "p1", start = 60, duration = 10, base = { opModConnect = true } }

[[expect]]
id = "subscribe"
description = "POSTs a Subscription"
kind = "request"
method = "POST"
resource = "Subscription"
within = 5

[[expect]]
id = "accepts"
description = "accepts the Notification with a 2xx"
kind = "request"
method = "POST"
resource = "Notification"
http_status = [200, 201, 204]
anchor = "event"
within = 3

[[expect]]
id = "received"
description = "answers Received"
kind = "response"
method = "POST"
control = "c1"
status = [1]
anchor = "event"
within = 3
"""


def lab_toml(pki: Pki, tmp: Path) -> Path:
    def device(name: str, cert: object, fault: str = "", subscribe: bool = False) -> str:
        issued = cert
        command = [
            sys.executable, str(DEVICE), "--url", "{url}", "--cert", str(issued.cert_path),  # type: ignore[attr-defined]
            "--key", str(issued.key_path), "--ca", "{ca}", "--lfdi", "{lfdi}",  # type: ignore[attr-defined]
            "--poll", "0.5", "--lifetime", "120",
        ]  # fmt: skip
        sets = ["DER", "Time", "Registration"]
        if fault:
            command += ["--fault", fault]
        if subscribe:
            command += ["--receiver-cert", str(pki.directory / "server-chain.pem")]
            command += ["--receiver-key", str(pki.directory / "server.key")]
            sets.append("Subscription")
        return (
            f'[[device]]\nname = "{name}"\nclass = "storage"\n'
            f"function_sets = {json.dumps(sets)}\n"
            f'certificate = "{issued.cert_path}"\n'  # type: ignore[attr-defined]
            f"command = {json.dumps(command)}\n"
        )

    managed = [f"{n:040X}" for n in (0xA1, 0xA2)]
    aggregator = device("fleet", pki.aggregator).replace(
        'class = "storage"', 'class = "aggregator"'
    )
    aggregator += (
        "managed = ["
        + ", ".join(f'{{ lfdi = "{lfdi}", sfdi = {sfdi_from_lfdi(lfdi)} }}' for lfdi in managed)
        + "]\n"
    )
    text = (
        '[campaign]\nname = "test lab"\n'
        "poll_rates = { DERProgramList = 1, DeviceCapability = 1, EndDeviceList = 1, "
        "FunctionSetAssignmentsList = 1, Time = 1, DERList = 1, MirrorUsagePointList = 1 }\n"
        f'[server]\ncerts_dir = "{pki.directory}"\n'
        + device("good", pki.device_a, subscribe=True)
        + device("mute", pki.device_b, "no-responses")
        + aggregator
    )
    path = tmp / "lab.toml"
    path.write_text(text)
    return path


async def test_device_mode_campaign_judges_each_device(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "procedures"
    directory.mkdir()
    (directory / "TEST-001.toml").write_text(FAST_EVENT)
    (directory / "TEST-002.toml").write_text(FAST_NOTIFICATION)
    for name in ("BASIC-016", "AGG-002", "CORE-001"):
        shutil.copy(catalogue.default_directory() / f"{name}.toml", directory)
    chosen = catalogue.select(catalogue.load_all(directory), None)
    lab = load_lab(lab_toml(pki, tmp_path))
    out = tmp_path / "results"
    campaign = await run_lab(lab, chosen, out)
    matrix = campaign.matrix()
    assert matrix == {
        "TEST-001": {"good": "pass", "mute": "fail", "fleet": NA},
        "TEST-002": {"good": "pass", "mute": NA, "fleet": NA},
        "BASIC-016": {"good": "pass", "mute": "pass", "fleet": NA},
        "AGG-002": {"good": NA, "mute": NA, "fleet": "pass"},
        "CORE-001": {"good": NA, "mute": NA, "fleet": NA},
    }, [
        (r.procedure, r.device, r.reason, [e.detail for e in r.expectations])
        for r in campaign.results
    ]
    # one device's procedure never showed in the other's record
    good = next(r for r in campaign.results if (r.procedure, r.device) == ("TEST-001", "good"))
    mute = next(r for r in campaign.results if (r.procedure, r.device) == ("TEST-001", "mute"))
    assert {e.lfdi for e in good.exchanges} == {pki.device_a.lfdi.lower()}
    assert good.context["programs"]["p1"] != mute.context["programs"]["p1"]
    statuses = [e.response_status for e in good.exchanges if e.resource == "Response"]
    assert statuses == [1, 2, 3]
    notified = next(r for r in campaign.results if (r.procedure, r.device) == ("TEST-002", "good"))
    assert [e.status for e in notified.exchanges if e.direction == "notification"] == [204]
    failed = {e.id for e in mute.expectations if e.verdict == "fail"}
    assert failed == {"received", "started", "completed"}
    # results a lab can hand over, and re-rendered from the JSON
    paths = results.write_all(campaign, out)
    page = paths["html"].read_text()
    assert "TEST-001 on mute: FAIL" in page and "IEEE 2030.5-2018 10.10.3" in page
    assert "GET /derp/" in page  # the exchanged messages are shown
    from csip.cli import main

    paths["html"].unlink()
    assert main(["conformance", "report", str(out)]) == 1  # a failure in the campaign
    assert "TEST-001 on mute: FAIL" in paths["html"].read_text()


async def test_server_mode_against_csip_passes(make_server: ServerFactory, pki: Pki) -> None:
    srv = await make_server(notification_allow_private=True, http_redirect_port=0)
    target = ServerTarget(
        srv.base,
        pki.device_a.cert_path,
        pki.device_a.key_path,
        pki.ca,
        second_cert=pki.device_b.combined_path,
        receiver_cert=pki.directory / "server-chain.pem",
        receiver_key=pki.directory / "server.key",
    )
    chosen = [p for p in catalogue.load_all().values() if p.checks and p.status == "ready"]
    admin = CsipAdmin(srv.admin_base, srv.admin_token)
    campaign = await run_server_mode(target, chosen, admin)
    failures = {
        r.procedure: [(e.id, e.detail) for e in r.expectations if e.verdict != "pass"]
        for r in campaign.results
        if r.outcome != "pass"
    }
    for name, problems in failures.items():
        print(name, problems)
    assert failures == {}
    checks = {e.id for r in campaign.results for e in r.expectations}
    assert checks == set(catalogue.SERVER_CHECKS)
    assert {"CORE-001", "CORE-002", "CORE-004", "UTIL-001", "BASIC-029"} <= set(campaign.procedures)


@pytest.mark.parametrize("admin", [False])
async def test_server_mode_without_admin_marks_what_it_cannot_do(
    make_server: ServerFactory, pki: Pki, admin: bool
) -> None:
    srv = await make_server()
    target = ServerTarget(srv.base, pki.device_a.cert_path, pki.device_a.key_path, pki.ca)
    chosen = catalogue.select(catalogue.load_all(), "UTIL-001,CORE-004")
    campaign = await run_server_mode(target, chosen, None)
    outcome = {r.procedure: r.outcome for r in campaign.results}
    assert outcome["CORE-004"] == "pass"
    util = next(r for r in campaign.results if r.procedure == "UTIL-001")
    verdicts = {e.id: e.verdict for e in util.expectations}
    assert verdicts["registration"] == "pass"
    assert verdicts["fsa-walk"] == "not-applicable"
