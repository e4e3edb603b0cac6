"""Simulated OEM devices (issue 11 item 4) against a real in-process csip over mutual TLS:
every body csip sends them is XSD-checked by the shared client; what they do is read back
through the admin API, as a lab would."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from csip.conformance.sim.core import FAULTS, OemProfile
from csip.conformance.sim.driver import (
    DeviceConfig,
    Fleet,
    aggregator_fleet,
    device_fleet,
    run_device,
)
from csip.pki.testpki import IssuedCert

from support import Running, ServerFactory

FAST = OemProfile(name="fast", poll_rate=1, post_rate=2)


async def ok(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status, data = await srv.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, data)
    return data


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def config(srv: Running, cert: IssuedCert, profile: OemProfile = FAST, **kw: Any) -> DeviceConfig:
    return DeviceConfig(
        server=srv.base,
        ca=srv.pki.ca,
        cert=cert.cert_path,
        key=cert.key_path,
        profile=profile,
        validator=srv.validator,
        **kw,
    )


async def program_for(srv: Running, lfdis: list[str], primacy: int = 10) -> dict[str, Any]:
    group = await ok(srv, "POST", "/api/groups", {"description": "lab", "level": "utility"})
    await ok(srv, "POST", f"/api/groups/{group['id']}/members", {"lfdis": lfdis})
    program = await ok(
        srv, "POST", f"/api/groups/{group['id']}/programs", {"description": "p", "primacy": primacy}
    )
    return dict(program)


async def publish(srv: Running, pid: int, start: int, duration: int, **base: Any) -> Any:
    body = {
        "controls": [
            {"start": start, "duration": duration, "base": base, "response_required": "03"}
        ]
    }
    (created,) = await ok(srv, "POST", f"/api/programs/{pid}/controls", body)
    return created


async def server_now(srv: Running) -> int:
    return int((await ok(srv, "GET", "/api/clock"))["now"])


async def registered(srv: Running, lfdi: str) -> bool:
    status, _ = await srv.admin("GET", f"/api/end-devices/{lfdi}")
    return status == 200


def codes(responses: Any, mrid: str) -> list[int]:
    return sorted(r["status"] for r in responses if r["subject"] == mrid)


async def start(fleet: Fleet, duration: float = 30.0) -> tuple[asyncio.Task[Any], asyncio.Event]:
    stop = asyncio.Event()
    return asyncio.create_task(fleet.run(duration, stop)), stop


async def test_polling_battery_registers_responds_and_posts_readings(srv: Running) -> None:
    device = srv.pki.device_a
    fleet = await device_fleet([config(srv, device)])
    task, stop = await start(fleet)
    try:
        await eventually(lambda: registered(srv, device.lfdi))
        program = await program_for(srv, [device.lfdi])
        now = await server_now(srv)
        control = await publish(
            srv, program["id"], now + 2, 3, opModTargetW={"multiplier": 0, "value": 2000}
        )

        async def answered() -> Any:
            data = await ok(srv, "GET", f"/api/programs/{program['id']}/responses")
            return codes(data, control["mrid"]) if len(codes(data, control["mrid"])) >= 3 else None

        assert await eventually(answered) == [1, 2, 3]
        readings = await ok(srv, "GET", f"/api/end-devices/{device.lfdi}/readings")
        assert readings, readings
    finally:
        stop.set()
        stats = await task
    sim = fleet.devices[0]
    assert sim.core is not None
    # discharging 2 kW for 3 s took energy out of the battery
    assert sim.core.energy_out_wh > 0
    assert stats.walks >= 2 and stats.responses == 3 and stats.readings >= 1
    print(stats)


async def test_ignores_cancellation_keeps_running_and_never_answers_6(srv: Running) -> None:
    good, bad = srv.pki.device_a, srv.pki.device_b
    faulty = OemProfile(name="faulty", poll_rate=1, post_rate=5, faults=FAULTS["ignores-cancel"])
    fleet = await device_fleet([config(srv, good), config(srv, bad, faulty)])
    task, stop = await start(fleet)
    try:
        for lfdi in (good.lfdi, bad.lfdi):
            await eventually(lambda lfdi=lfdi: registered(srv, lfdi))
        program = await program_for(srv, [good.lfdi, bad.lfdi])
        now = await server_now(srv)
        control = await publish(srv, program["id"], now + 1, 4, opModMaxLimW=5000)

        keys = (good.lfdi, bad.lfdi)

        async def by_device(count: dict[str, int]) -> Any:
            data = await ok(srv, "GET", f"/api/programs/{program['id']}/responses")
            seen = {lfdi: sorted(r["status"] for r in data if r["lfdi"] == lfdi) for lfdi in keys}
            return seen if all(len(seen[k]) >= v for k, v in count.items()) else None

        await eventually(lambda: by_device({good.lfdi: 2, bad.lfdi: 2}))
        await ok(srv, "POST", f"/api/controls/{control['id']}/cancel", {})
        await asyncio.sleep(0)
        seen = await eventually(lambda: by_device({good.lfdi: 3, bad.lfdi: 3}))
    finally:
        stop.set()
        await task
    assert seen[good.lfdi] == [1, 2, 6]
    assert seen[bad.lfdi] == [1, 2, 3]  # ran to its end as if nothing happened


async def test_aggregator_gateway_manages_50_end_devices(srv: Running) -> None:
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "gateway"})
    await ok(srv, "PUT", f"/api/aggregators/gateway/certificates/{agg.lfdi}", {})
    profile = OemProfile(name="agg", poll_rate=2, post_rate=5)
    fleet = await aggregator_fleet(config(srv, agg, profile, name="gw"), 50)
    lfdis = [d.lfdi for d in fleet.devices]
    assert len(set(lfdis)) == 50
    listed = await ok(srv, "GET", "/api/end-devices?aggregator=gateway&limit=100")
    # and the aggregator certificate's own EndDevice (CSIP-AUS aggregator model, issue 9 item 8)
    assert {d["lfdi"] for d in listed["items"]} == set(lfdis) | {agg.lfdi}
    program = await program_for(srv, lfdis[:10])
    task, stop = await start(fleet)
    try:
        now = await server_now(srv)
        control = await publish(srv, program["id"], now + 4, 6, opModMaxLimW=2500)

        async def answered() -> Any:
            data = await ok(srv, "GET", f"/api/programs/{program['id']}/responses")
            done = {r["lfdi"] for r in data if r["status"] == 3 and r["subject"] == control["mrid"]}
            return done if len(done) == 10 else None

        assert await eventually(answered, 40.0) == set(lfdis[:10])
    finally:
        stop.set()
        stats = await task
    assert stats.errors == 0
    assert stats.walks >= 50
    assert stats.readings >= 50


async def test_subscribing_battery_acts_on_notifications(make_server: ServerFactory) -> None:
    srv = await make_server(notification_allow_private=True, outbox_retry_delays=[0.5])
    device = srv.pki.device_a
    profile = OemProfile(
        name="subscriber", poll_rate=1, post_rate=60, subscribe=True, subscribed_poll_factor=600
    )
    lab = config(
        srv,
        device,
        profile,
        notify_cert=srv.pki.directory / "server-chain.pem",
        notify_key=srv.pki.directory / "server.key",
    )
    fleet = await device_fleet([lab])
    task, stop = await start(fleet, 40.0)
    try:
        await eventually(lambda: registered(srv, device.lfdi))
        program = await program_for(srv, [device.lfdi])
        sim = fleet.devices[0]

        async def subscribed() -> bool:
            return bool(sim.subscribed)

        await eventually(subscribed)
        walks = sim.stats.walks
        now = await server_now(srv)
        control = await publish(srv, program["id"], now + 2, 3, opModFixedW=-5000)

        async def answered() -> Any:
            data = await ok(srv, "GET", f"/api/programs/{program['id']}/responses")
            found = codes(data, control["mrid"])
            return found if len(found) >= 3 else None

        assert await eventually(answered) == [1, 2, 3]
        # it learnt of the control from the notification, not from a poll
        assert sim.stats.notifications >= 1 and sim.stats.walks == walks
    finally:
        stop.set()
        await task
    assert sim.core is not None and sim.core.energy_out_wh < 0  # it charged


async def test_pv_inverter_follows_a_volt_var_curve(srv: Running) -> None:
    device = srv.pki.device_a
    pv = OemProfile(name="pv", kind="pv", poll_rate=1, post_rate=2, voltage_period_s=40)
    fleet = await device_fleet([config(srv, device, pv)])
    task, stop = await start(fleet)
    try:
        await eventually(lambda: registered(srv, device.lfdi))
        program = await program_for(srv, [device.lfdi])
        curve = await ok(
            srv, "POST", f"/api/programs/{program['id']}/curves",
            {"curve_type": 11, "points": [[92, 30], [98, 0], [102, 0], [108, -30]],
             "x_multiplier": 0, "y_multiplier": 0, "y_ref_type": 3},
        )  # fmt: skip
        now = await server_now(srv)
        control = await publish(
            srv, program["id"], now + 1, 30, opModVoltVar={"curve": curve["id"]}, opModMaxLimW=5000
        )
        sim = fleet.devices[0]

        async def following() -> bool:
            core = sim.core
            return core is not None and core.winners(sim.now()).get("opModVoltVar") is not None

        await eventually(following)
    finally:
        stop.set()
        await task
    core = sim.core
    assert core is not None
    (href,) = core.curves
    moment = sim.now()
    setpoint = core.setpoint(moment)
    expected = core.curves[href].y(100 * core.voltage(moment) / pv.nominal_v) / 100 * pv.rated_var
    assert setpoint.sources["opModVoltVar"] == control["mrid"]
    assert abs(setpoint.var - expected) < 1e-6
    assert setpoint.w == 2500  # 50 % of rated: the limit, under what the panels give


async def test_csip_sim_fleet_of_200_as_a_process(srv: Running, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    shutil.copytree(srv.pki.directory, pki)  # fleet certificates are issued in the copy
    command = [
        sys.executable, "-m", "csip.cli", "sim",
        "--server", srv.base, "--ca", str(pki / "ca.pem"),
        # 40 s: under a loaded CI host 25 s left some of the 200 without a finished walk
        "--fleet", "200", "--pki", str(pki), "--duration", "40", "--ramp", "5",
        "--speedup", "20",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    text = out.decode()
    print(text, err.decode()[-2000:])
    assert process.returncode == 0, err.decode()[-2000:]
    assert "csip sim: 200 devices" in text
    walks = int(re.search(r"walks (\d+)", text).group(1))  # type: ignore[union-attr]
    assert walks >= 200
    listed = await ok(srv, "GET", "/api/end-devices?limit=500")
    assert listed["total"] >= 200


async def test_after_a_404_rediscovers_but_the_faulty_one_keeps_polling(srv: Running) -> None:
    good, bad = srv.pki.device_a, srv.pki.device_b
    faulty = OemProfile(name="faulty", poll_rate=1, post_rate=60, faults=FAULTS["polls-after-404"])
    fleet = await device_fleet([config(srv, good), config(srv, bad, faulty)])
    task, stop = await start(fleet)
    sim_good, sim_bad = fleet.devices
    try:
        for lfdi in (good.lfdi, bad.lfdi):
            await eventually(lambda lfdi=lfdi: registered(srv, lfdi))
        for lfdi in (good.lfdi, bad.lfdi):
            await ok(srv, "DELETE", f"/api/end-devices/{lfdi}")

        async def settled() -> bool:
            return sim_good.stats.registered == 2 and sim_bad.stats.not_found >= 4

        await eventually(settled)
        assert await registered(srv, good.lfdi)  # registered again in band
        assert not await registered(srv, bad.lfdi)
    finally:
        stop.set()
        await task
    assert sim_good.stats.not_found == 1
    assert sim_bad.stats.registered == 1


async def test_run_device_is_a_task_the_harness_can_cancel(srv: Running) -> None:
    device = srv.pki.device_a
    task = run_device(config(srv, device, name="lab-entry-1"), duration=60)
    await eventually(lambda: registered(srv, device.lfdi))
    task.cancel()
    async with asyncio.timeout(10):
        stats = await task
    assert stats.registered == 1 and stats.errors == 0


async def test_csip_sim_until_sigterm_as_a_lab_device_command(srv: Running) -> None:
    device = srv.pki.device_b
    command = [
        sys.executable, "-m", "csip.cli", "sim", "--server", srv.base, "--ca", str(srv.pki.ca),
        "--cert", str(device.cert_path), "--key", str(device.key_path),
        "--kind", "faulty-wrong-codes", "--duration", "0",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await eventually(lambda: registered(srv, device.lfdi))
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    assert "csip sim: 1 devices" in out.decode()


async def test_foreign_lfdi_device_is_refused_but_keeps_going(srv: Running) -> None:
    device = srv.pki.device_a
    faulty = OemProfile(name="faulty", poll_rate=1, post_rate=60, faults=FAULTS["foreign-lfdi"])
    fleet = await device_fleet([config(srv, device, faulty)])
    task, stop = await start(fleet)
    sim = fleet.devices[0]
    try:
        await eventually(lambda: registered(srv, device.lfdi))
        program = await program_for(srv, [device.lfdi])
        now = await server_now(srv)
        await publish(srv, program["id"], now + 1, 2, opModMaxLimW=5000)

        async def refused() -> bool:
            return sim.stats.responses >= 3

        await eventually(refused)
        assert await ok(srv, "GET", f"/api/programs/{program['id']}/responses") == []
    finally:
        stop.set()
        await task
    assert sim.stats.walks >= 2 and sim.stats.errors >= 4  # its MUP and three Responses
