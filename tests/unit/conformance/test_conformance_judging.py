"""Judging expectations from recorded exchanges, and rendering results (JSON, JUnit, HTML)."""

from __future__ import annotations

import json
from pathlib import Path

from lxml import etree

from csip.conformance.exchanges import Exchange, classify, exchange
from csip.conformance.judge import Context, judge
from csip.conformance.procedures import Expectation
from csip.conformance.results import (
    Campaign,
    ExpectationResult,
    ProcedureResult,
    load,
    write_all,
)

T0 = 1_000_000.0
LFDI = "AB" * 20
MRID = "C0FFEE" + "0" * 26


def ctx() -> Context:
    return Context(
        t0=T0,
        steps={"go": T0 + 10},
        controls={"c1": {"mrid": MRID, "href": "/derp/1/derc/1"}},
        programs={"p1": "/derp/1"},
        poll_rates={"DERProgramList": 5, "DeviceCapability": 5},
        post_rate=10,
    )


def get(path: str, t: float) -> Exchange:
    return exchange(LFDI, "request", "GET", path, 200, b"", b"", t=T0 + t)


def response(status: int, t: float) -> Exchange:
    body = (
        f"<Response xmlns='urn:ieee:std:2030.5:ns'><endDeviceLFDI>{LFDI}</endDeviceLFDI>"
        f"<status>{status}</status><subject>{MRID.lower()}</subject></Response>"
    ).encode()
    return exchange(LFDI, "request", "POST", "/rsps/1/rsp", 201, body, b"", t=T0 + t)


def expect(**fields: object) -> Expectation:
    return Expectation.model_validate({"id": "e", "description": "d", **fields})


def test_paths_are_classified_as_2030_5_resources() -> None:
    assert classify("GET", "/dcap") == "DeviceCapability"
    assert classify("GET", "/derp/3/derc") == "DERControlList"
    assert classify("GET", "/derp/3/derc/9") == "DERControl"
    assert classify("POST", "/edev/4/sub") == "Subscription"
    assert classify("GET", "/edev/4/sub") == "SubscriptionList"
    assert classify("PUT", "/edev/4/der/1/ders") == "DERStatus"
    assert classify("POST", "/mup/2") == "MirrorMeterReading"
    assert classify("GET", "/nowhere") == "Other"


def test_response_status_and_subject_are_read_from_the_body() -> None:
    record = response(2, 1)
    assert (record.subject, record.response_status) == (MRID, 2)


def test_response_expectation_passes_fails_and_catches_early() -> None:
    started = expect(
        kind="response", method="POST", control="c1", status=[2], after=30, within=30, tolerance=5
    )
    assert judge(started, [response(1, 2)], ctx(), T0 + 20).verdict == "pending"
    assert judge(started, [response(1, 2), response(2, 31)], ctx(), T0 + 32).verdict == "pass"
    missing = judge(started, [response(1, 2)], ctx(), T0 + 40)
    assert missing.verdict == "fail" and "Responses seen for it: 1 at +2.0s" in missing.detail
    slightly_early = judge(started, [response(2, 27)], ctx(), T0 + 40)  # within tolerance
    assert slightly_early.verdict == "pass" and slightly_early.window[0] == 25.0
    early = judge(started, [response(2, 3), response(2, 31)], ctx(), T0 + 40)
    assert early.verdict == "fail" and "too early" in early.detail


def test_window_counts_polls_and_anchors_on_steps() -> None:
    reread = expect(
        kind="request",
        resource="DERControlList",
        anchor="go",
        within=0,
        within_polls=1,
        tolerance=1,
    )
    judged = judge(reread, [get("/derp/1/derc", 5)], ctx(), T0 + 20)
    assert judged.verdict == "fail" and judged.window == (10.0, 16.0)
    assert judge(reread, [get("/derp/1/derc", 15)], ctx(), T0 + 15).verdict == "pass"
    unanchored = Context(t0=T0)
    assert judge(reread, [], unanchored, T0 + 100).verdict == "pending"


def test_request_counts_and_program_filter() -> None:
    both = expect(kind="request", resource="DERControlList", within=30, min_count=2)
    other = [get("/derp/1/derc", 1), get("/derp/2/derc", 2)]
    assert judge(both, other, ctx(), T0 + 5).verdict == "pass"
    mine = expect(kind="request", resource="DERControlList", within=30, program="p1", min_count=2)
    assert judge(mine, other, ctx(), T0 + 40).verdict == "fail"


def test_sequence_needs_the_order() -> None:
    walk = expect(
        kind="sequence", resources=["DeviceCapability", "EndDevice", "DERControlList"], within=30
    )
    good = [get("/dcap", 1), get("/edev/1", 2), get("/derp/1/derc", 3)]
    assert judge(walk, good, ctx(), T0 + 4).verdict == "pass"
    bad = [get("/derp/1/derc", 1), get("/dcap", 2), get("/edev/1", 3)]
    judged = judge(walk, bad, ctx(), T0 + 40)
    assert judged.verdict == "fail" and "then no DERControlList" in judged.detail


def test_no_request_and_period() -> None:
    quiet = expect(kind="no-request", resource="DERControlList", within=10, tolerance=0)
    assert judge(quiet, [], ctx(), T0 + 5).verdict == "pending"
    assert judge(quiet, [], ctx(), T0 + 11).verdict == "pass"
    assert judge(quiet, [get("/derp/1/derc", 4)], ctx(), T0 + 5).verdict == "fail"
    posts = expect(
        kind="period",
        method="POST",
        resource="MirrorMeterReading",
        period="post_rate",
        within=40,
        tolerance=2,
    )
    steady = [
        exchange(LFDI, "request", "POST", "/mup/1", 201, b"", b"", t=T0 + t)
        for t in (5, 15, 25, 35)
    ]
    assert judge(posts, steady, ctx(), T0 + 43).verdict == "pass"
    rare = [steady[0], steady[3]]
    judged = judge(posts, rare, ctx(), T0 + 43)
    assert judged.verdict == "fail" and "longest gap 30.0s" in judged.detail


def campaign() -> Campaign:
    record = response(2, 31)
    failed = ProcedureResult(
        "CORE-012",
        "acme<1>",
        "fail",
        "DERControl basic",
        "IEEE 2030.5 10.10",
        started=T0,
        expectations=[
            ExpectationResult("started", "answers Started", "fail", "no Response", (30, 35), [0])
        ],
        exchanges=[record],
    )
    passed = ProcedureResult("BASIC-016", "acme<1>", "pass", "defaults", "10.10.3", started=T0)
    skipped = ProcedureResult("AGG-002", "acme<1>", "not-applicable", reason="aggregators only")
    result = Campaign("lab", "device", started=T0, finished=T0 + 60)
    result.devices = [
        {"name": "acme<1>", "class": "storage", "lfdi": LFDI, "function_sets": ["DER"]}
    ]
    result.procedures = ["CORE-012", "BASIC-016", "AGG-002"]
    result.results = [failed, passed, skipped]
    return result


def test_results_round_trip_and_render(tmp_path: Path) -> None:
    paths = write_all(campaign(), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["matrix"]["CORE-012"]["acme<1>"] == "fail"
    assert data["counts"] == {"pass": 1, "fail": 1, "not-applicable": 1, "error": 0}
    again = load(tmp_path)
    assert again.to_json() == campaign().to_json() | {"started": again.started}
    suite = etree.fromstring(paths["junit"].read_bytes()).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase/failure")
    assert failure is not None and "IEEE 2030.5 10.10" in str(failure.get("message"))
    assert "POST /rsps/1/rsp" in str(failure.text)
    page = paths["html"].read_text()
    assert "acme&lt;1&gt;" in page and "acme<1>" not in page  # escaped
    assert "IEEE 2030.5 10.10" in page and "no Response" in page and "&lt;Response" in page
    assert "http://" not in page and "https://" not in page  # no external assets


async def test_notifications_are_recorded_and_held_back_per_device() -> None:
    import time
    from types import SimpleNamespace

    import pytest

    from csip.conformance.exchanges import Recorder

    recorder = Recorder()
    delivered: list[object] = []

    async def sender(message: object) -> None:
        delivered.append(message)

    send = recorder.wrap_sender(sender)
    intent = json.dumps({"lfdi": LFDI, "subscription": 1}).encode()
    message = SimpleNamespace(target="https://localhost:1/n", body=intent)
    await send(message)
    recorder.held_until[LFDI.lower()] = time.time() + 60
    with pytest.raises(ConnectionRefusedError):
        await send(message)
    assert len(delivered) == 1
    record = recorder.of(LFDI)
    assert [(e.direction, e.resource, e.status) for e in record] == [
        ("notification", "Notification", 204),
        ("notification", "Notification", 0),
    ]


def test_timing_error_is_the_distance_from_the_nominal_window() -> None:
    # a moment (after == within): Started expected at +30, seen at +31.5 -> 1.5 s late
    started = expect(
        kind="response",
        method="POST",
        control="c1",
        status=[2],
        after=30,
        within=30,
        within_polls=0,
        tolerance=5,
    )
    verdict = judge(started, [response(2, 31.5)], ctx(), T0 + 31.6)
    assert verdict.verdict == "pass" and verdict.timing_error == 1.5
    early = judge(started, [response(2, 29.0)], ctx(), T0 + 31.6)
    assert early.verdict == "pass" and early.timing_error == 1.0
    # a deadline: on time anywhere before its nominal close (+20 + one 5 s poll)
    received = expect(
        kind="response", method="POST", control="c1", status=[1], within=20, within_polls=1
    )
    assert judge(received, [response(1, 3.0)], ctx(), T0 + 4).timing_error == 0.0
    late = judge(received.model_copy(update={"tolerance": 2}), [response(1, 26.0)], ctx(), T0 + 30)
    assert late.verdict == "pass" and late.timing_error == 1.0
    # a period: how far the longest gap went past the period
    posts = expect(
        kind="period",
        method="GET",
        resource="DeviceCapability",
        period=4,
        within=12,
        within_polls=0,
    )
    gaps = [get("/dcap", t) for t in (3.0, 7.5, 11.0)]
    assert judge(posts.model_copy(update={"tolerance": 1}), gaps, ctx(), T0 + 13).timing_error == (
        0.5
    )
    # nothing timed: a no-request, a failure without the event
    assert (
        judge(expect(kind="no-request", resource="Time", within=5), [], ctx(), T0 + 9).timing_error
        is None
    )
    assert judge(received, [], ctx(), T0 + 60).timing_error is None


def test_results_carry_the_largest_timing_error(tmp_path: Path) -> None:
    campaign = Campaign(name="t", mode="device", procedures=["P-1"])
    result = ProcedureResult("P-1", "dev", "pass", "title", "clause")
    result.expectations = [
        ExpectationResult("a", "d", "pass", "ok", (0.0, 1.0), [], 0.25),
        ExpectationResult("b", "d", "pass", "ok", (0.0, 1.0), [], 0.75),
        ExpectationResult("c", "d", "pass", "ok", (0.0, 1.0), [], None),
    ]
    campaign.results = [result]
    paths = write_all(campaign, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["largest_timing_error"] == {"seconds": 0.75, "where": "P-1 on dev: b"}
    assert data["results"][0]["expectations"][1]["timing_error"] == 0.75
    assert "Largest timing error: 0.75 s (P-1 on dev: b)" in paths["html"].read_text()
    assert load(tmp_path).largest_timing_error() == (0.75, "P-1 on dev: b")


def test_randomized_fails_only_when_every_control_starts_at_its_nominal_start() -> None:
    def started(mrid: str, t: float) -> Exchange:
        body = (
            f"<Response xmlns='urn:ieee:std:2030.5:ns'><endDeviceLFDI>{LFDI}</endDeviceLFDI>"
            f"<status>2</status><subject>{mrid.lower()}</subject></Response>"
        ).encode()
        return exchange(LFDI, "request", "POST", "/rsps/1/rsp", 201, body, b"", t=T0 + t)

    context = ctx()
    mrids = {name: f"{i:02X}" + "0" * 30 for i, name in enumerate(("c1", "c2", "c3"), 1)}
    for (name, mrid), start in zip(mrids.items(), (30, 60, 90), strict=True):
        context.controls[name] = {"mrid": mrid, "href": "/x", "start": f"{T0 + start}"}
    spread = expect(kind="randomized", method="POST", controls=list(mrids), status=[2], within=110)
    nominal = [started(mrids["c1"], 30.2), started(mrids["c2"], 60.1), started(mrids["c3"], 90.3)]
    verdict = judge(spread, nominal, context, T0 + 91)
    assert verdict.verdict == "fail" and "randomizeStart ignored" in verdict.detail
    assert judge(spread, nominal[:2], context, T0 + 80).verdict == "pending"
    drawn = [*nominal[:2], started(mrids["c3"], 97.0)]
    assert judge(spread, drawn, context, T0 + 98).verdict == "pass"
    assert judge(spread, nominal[:1], context, T0 + 120).verdict == "fail"


def test_a_response_the_server_refused_does_not_count() -> None:
    refused = response(1, 3.0)
    refused.status = 403  # posted under another device's LFDI
    received = expect(kind="response", method="POST", control="c1", status=[1], within=20)
    verdict = judge(received, [refused], ctx(), T0 + 30)
    assert verdict.verdict == "fail" and "Responses seen for it: 1 at +3.0s" in verdict.detail
    assert judge(received, [refused, response(1, 4.0)], ctx(), T0 + 30).verdict == "pass"
