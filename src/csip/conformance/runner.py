"""Device mode: csip runs as the scripted test server; the devices under test are black boxes.

For each device the runner works through its procedures one after another; devices run
concurrently (up to the campaign's concurrency). Isolation between devices:

- each (device, procedure) gets its own group chain (its own FunctionSetAssignments), its own
  programs, controls, defaults and curves; the device is moved out of the previous
  procedure's group before the next starts, so no device ever sees another's programs;
- times in procedures are relative to the procedure's own start in real time, so two devices
  running the same procedure at different moments never share a time-driven state;
- notification hold-backs and post rates are per device;
- the server clock and the pollRates are global: the campaign sets pollRates once before any
  device starts, and a procedure that moves the clock or changes pollRates (`exclusive`) runs
  alone, after the concurrent part, with the clock reset afterwards; the report says so.

The runner drives csip only through its admin API (`CsipAdmin`) and records every 2030.5
exchange and notification through the server's recording hook (`Recorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from csip.conformance.admin import AdminAdapter, AdminError, CsipAdmin
from csip.conformance.exchanges import Recorder
from csip.conformance.judge import Context, Judgement, judge
from csip.conformance.lab import DeviceUnderTest, Lab
from csip.conformance.procedures import ControlSpec, Procedure, Step
from csip.conformance.results import Campaign, ExpectationResult, ProcedureResult
from csip.progress import progress

log = logging.getLogger(__name__)

#: How often the runner looks at the record while a procedure runs.
TICK = 0.25
#: Seconds after the last window closes before a procedure gives up regardless.
GRACE = 1.0


def lfdi_of_certificate(path: Path) -> tuple[str, int]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi

    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    lfdi = lfdi_from_cert_der(certificate.public_bytes(Encoding.DER))
    return lfdi, sfdi_from_lfdi(lfdi)


@dataclass
class Device:
    """A device under test as the runner knows it."""

    spec: DeviceUnderTest
    lfdi: str
    sfdi: int
    directory: Path
    process: asyncio.subprocess.Process | None = None
    leaf_groups: list[int] = field(default_factory=list)
    #: an aggregator's EndDevices found after it registered them in band
    discovered: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def members(self) -> list[str]:
        """The EndDevices that go into the device's groups."""
        if self.spec.device_class == "aggregator":
            return [m.lfdi.upper() for m in self.spec.managed] or list(self.discovered)
        return [self.lfdi]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.spec.device_class,
            "lfdi": self.lfdi,
            "function_sets": list(self.spec.function_sets),
        }


class Progress:
    """A progress bar while a campaign runs (csip.progress: drawn on a terminal only), its
    label counting outcomes, exchanges and what is running."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self._stack = contextlib.ExitStack()
        self.bar = self._stack.enter_context(progress("campaign", total, stream))
        self.enabled = self.bar.drawn
        self.total = total
        self.done: dict[str, int] = {"pass": 0, "fail": 0, "not-applicable": 0, "error": 0}
        self.running: dict[str, str] = {}
        self.exchanges = 0
        self._last = 0.0

    def started(self, device: str, procedure: str) -> None:
        self.running[device] = procedure
        self.show(force=True)

    def finished(self, result: ProcedureResult) -> None:
        self.running.pop(result.device, None)
        self.done[result.outcome] = self.done.get(result.outcome, 0) + 1
        self.bar.advance()
        self.show(force=True)

    def exchange(self, _: Any) -> None:
        self.exchanges += 1
        self.show()

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        running = ", ".join(f"{d}:{p}" for d, p in list(self.running.items())[:3])
        more = f" +{len(self.running) - 3}" if len(self.running) > 3 else ""
        self.bar.describe(
            f"pass {self.done['pass']} fail {self.done['fail']} "
            f"n/a {self.done['not-applicable']} err {self.done['error']} | "
            f"{self.exchanges} exchanges | {running[:60]}{more}"
        )

    def close(self) -> None:
        self._stack.close()


@dataclass
class Harness:
    """What a running campaign holds: the server's admin adapter, the recorder, endpoints."""

    admin: AdminAdapter
    recorder: Recorder
    url: str
    ca: Path
    out: Path
    poll_rates: dict[str, int]
    clock_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# ---- one procedure on one device ------------------------------------------------------------
class ProcedureRun:
    def __init__(self, harness: Harness, device: Device, procedure: Procedure) -> None:
        self.h = harness
        self.device = device
        self.procedure = procedure
        self.context = Context(t0=0.0, poll_rates=dict(harness.poll_rates))
        self.groups: dict[str, int] = {}  # device, parent, next
        self.program_ids: dict[str, int] = {}
        self.control_ids: dict[str, int] = {}
        self.curve_ids: dict[str, int] = {}
        self.notes: list[str] = []
        self.clock_moved = False
        self.rates_changed = False

    async def now(self) -> float:
        """Server time (a moved clock shows here; for concurrent runs it is real time)."""
        return await self.h.admin.now()

    async def setup(self) -> None:
        admin, spec = self.h.admin, self.procedure.preconditions
        label = f"{self.device.name}:{self.procedure.id}"[:28]
        parent: int | None = None
        chain: list[int] = []
        for level in range(spec.group_levels):
            group = await admin.create_group(f"{label}/{level}", parent)
            chain.append(int(group["id"]))
            parent = int(group["id"])
        self.groups["device"] = chain[-1]
        self.groups["parent"] = chain[-2] if len(chain) > 1 else chain[-1]
        if any(p.level == "next" for p in spec.programs):
            self.groups["next"] = int((await admin.create_group(f"{label}/next"))["id"])
        for program in spec.programs:
            created = await admin.create_program(
                self.groups[program.level], f"{program.name} {label}"[:32], program.primacy
            )
            self.program_ids[program.name] = int(created["id"])
            self.context.programs[program.name] = str(created["href"])
            if program.default_base is not None or program.default_settings:
                await admin.set_default(
                    int(created["id"]), program.default_base or {}, program.default_settings
                )
        for curve in spec.curves:
            body = curve.model_dump(exclude={"name", "program"})
            body["points"] = [list(p) for p in curve.points]
            created = await admin.create_curve(self.program_ids[curve.program], body)
            self.curve_ids[curve.name] = int(created["id"])
        if spec.post_rate is not None:
            for lfdi in self.device.members:
                await admin.set_post_rate(lfdi, spec.post_rate)
            self.context.post_rate = spec.post_rate
        if spec.poll_rates:
            await admin.set_poll_rates(spec.poll_rates)
            self.context.poll_rates.update(spec.poll_rates)
            self.rates_changed = True
        # move the device out of its previous procedure's group, into this one
        for old in self.device.leaf_groups:
            for lfdi in self.device.members:
                await admin.remove_member(old, lfdi)
        self.device.leaf_groups = [self.groups["device"]]
        for lfdi in self.device.members:
            await admin.add_member(self.groups["device"], lfdi)

    def _base(self, base: dict[str, Any]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for mode, value in base.items():
            if isinstance(value, dict) and isinstance(value.get("curve"), str):
                value = {**value, "curve": self.curve_ids[value["curve"]]}
            resolved[mode] = value
        return resolved

    async def create_control(self, spec: ControlSpec) -> None:
        server_now = await self.now()
        start = server_now + spec.start
        body: dict[str, Any] = {
            "start": round(start),
            "duration": spec.duration,
            "base": self._base(spec.base),
            "description": f"{spec.name} {self.procedure.id}"[:32],
            "response_required": spec.response_required,
        }
        if spec.randomize_start is not None:
            body["randomize_start"] = spec.randomize_start
        if spec.randomize_duration is not None:
            body["randomize_duration"] = spec.randomize_duration
        created = await self.h.admin.create_control(self.program_ids[spec.program], body)
        self.control_ids[spec.name] = int(created["id"])
        self.context.controls[spec.name] = {
            "mrid": str(created["mrid"]).upper(),
            "href": str(created["href"]),
            # the nominal start on the recorder's (wall) clock, for `randomized`
            "start": f"{time.time() + round(start) - server_now:.3f}",
        }

    async def do(self, step: Step) -> None:
        admin = self.h.admin
        if step.action in ("create-control", "supersede-control"):
            assert step.control is not None
            await self.create_control(step.control)
        elif step.action == "cancel-control":
            await admin.cancel_control(self.control_ids[str(step.target)], step.randomized)
        elif step.action == "cancel-all":
            for lfdi in self.device.members:
                await admin.cancel_device(lfdi)
        elif step.action == "set-default":
            await admin.set_default(
                self.program_ids[str(step.program)], step.base or {}, step.settings
            )
        elif step.action == "set-post-rate":
            for lfdi in self.device.members:
                await admin.set_post_rate(lfdi, step.rate)
            self.context.post_rate = step.rate
        elif step.action == "set-poll-rates":
            await admin.set_poll_rates(step.poll_rates)
            self.context.poll_rates.update(step.poll_rates)
            self.rates_changed = True
        elif step.action == "update-program":
            await admin.update_program(self.program_ids[str(step.program)], int(step.primacy or 0))
        elif step.action == "move-group":
            target = self.groups.get("next")
            if target is None:
                target = int((await admin.create_group(f"{self.device.name}/moved"))["id"])
            for lfdi in self.device.members:
                await admin.add_member(target, lfdi)
                await admin.remove_member(self.groups["device"], lfdi)
            self.device.leaf_groups = [target]
        elif step.action == "hold-notifications":
            until = time.time() + float(step.seconds or 0)
            self.h.recorder.held_until[self.device.lfdi.lower()] = until
        elif step.action == "move-clock":
            await admin.move_clock(float(step.seconds or 0))
            self.clock_moved = True
        elif step.action == "delete-end-device":
            for lfdi in self.device.members:
                await admin.remove_device(lfdi)
        self.context.steps[step.name] = time.time()

    def judge_all(self, now: float) -> list[Judgement]:
        record = self.h.recorder.of(self.device.lfdi, self.context.t0)
        return [judge(e, record, self.context, now) for e in self.procedure.expect]

    async def run(self, start_device: Callable[[], Any]) -> ProcedureResult:
        procedure = self.procedure
        result = ProcedureResult(
            procedure.id, self.device.name, "error", procedure.title, procedure.clause
        )
        try:
            await self.setup()
            self.context.t0 = result.started = time.time()
            for control in procedure.preconditions.controls:
                await self.create_control(control)
            await start_device()
            judgements = await self._observe()
            result.outcome = "pass" if all(j.verdict == "pass" for j in judgements) else "fail"
            self._fill(result, judgements)
        except Exception as exc:  # one procedure's trouble must not end the campaign
            result.outcome = "error"
            result.reason = f"the harness could not run this procedure: {exc!r}"
            log.exception("%s on %s", procedure.id, self.device.name)
            if self.context.t0:
                result.exchanges = self.h.recorder.of(self.device.lfdi, self.context.t0)
        finally:
            await self.teardown()
            result.duration = time.time() - (result.started or time.time())
            result.notes.extend(self.notes)
        return result

    async def _observe(self) -> list[Judgement]:
        pending = sorted(self.procedure.steps, key=lambda s: s.at)
        t0 = self.context.t0
        # the latest a window can close: every step done, the widest window after it
        horizon = max(s.at for s in pending) if pending else 0.0
        widest = max(
            e.after + e.within + e.within_polls * self.context.poll(e.resource) + e.tolerance
            for e in self.procedure.expect
        )
        deadline = t0 + horizon + widest + GRACE + 5.0
        while True:
            now = time.time()
            while pending and t0 + pending[0].at <= now:
                await self.do(pending.pop(0))
            judgements = self.judge_all(now)
            decided = all(j.verdict != "pending" for j in judgements)
            if (decided and not pending) or now > deadline:
                return [
                    j
                    if j.verdict != "pending"
                    else Judgement(
                        j.id, j.description, "fail", "not decided: " + j.detail, j.window, [], None
                    )
                    for j in judgements
                ]
            await asyncio.sleep(TICK)

    def _fill(self, result: ProcedureResult, judgements: list[Judgement]) -> None:
        result.exchanges = self.h.recorder.of(self.device.lfdi, self.context.t0)
        position = {id(e): i for i, e in enumerate(result.exchanges)}
        for j in judgements:
            evidence = [position[id(e)] for e in j.evidence if id(e) in position]
            result.expectations.append(
                ExpectationResult(
                    j.id, j.description, j.verdict, j.detail, j.window, evidence, j.timing_error
                )
            )
        result.context = self.context.to_json()

    async def teardown(self) -> None:
        admin = self.h.admin
        with contextlib.suppress(AdminError, OSError):
            for lfdi in self.device.members:
                await admin.cancel_device(lfdi)
            if self.procedure.preconditions.post_rate is not None or any(
                s.action == "set-post-rate" for s in self.procedure.steps
            ):
                for lfdi in self.device.members:
                    await admin.set_post_rate(lfdi, None)
            if self.clock_moved:
                await admin.reset_clock()
                self.notes.append("ran alone: it moved the global server clock (reset after)")
            if self.rates_changed:
                await admin.set_poll_rates(self.h.poll_rates)
                self.notes.append("ran alone: it changed the global pollRates (restored after)")
        self.h.recorder.held_until.pop(self.device.lfdi.lower(), None)


# ---- device processes ----------------------------------------------------------------------
def device_command(device: Device, harness: Harness) -> list[str]:
    spec = device.spec
    values = {
        "url": harness.url,
        "dcap": harness.url + "/dcap",
        "ca": str(harness.ca),
        "cert": str(spec.certificate or ""),
        "key": str(spec.key or spec.certificate or ""),
        "lfdi": device.lfdi,
        "name": device.name,
        "out": str(device.directory),
    }
    return [part.format(**values) for part in spec.command]


async def start_process(device: Device, harness: Harness) -> None:
    if not device.spec.command or device.process is not None:
        return
    device.directory.mkdir(parents=True, exist_ok=True)
    log_file = (device.directory / "device.log").open("ab")
    try:
        device.process = await asyncio.create_subprocess_exec(
            *device_command(device, harness),
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "CSIP_HARNESS_URL": harness.url},
        )
    finally:
        log_file.close()


async def stop_process(device: Device) -> None:
    process, device.process = device.process, None
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()


# ---- a campaign -----------------------------------------------------------------------------
async def discover_members(
    admin: AdminAdapter, name: str, within: float = 60.0, interval: float = 1.0
) -> list[str]:
    """The EndDevices an aggregator registered in band: wait until some exist and the list
    stays the same for one interval (or the timeout passes)."""
    deadline = time.monotonic() + within
    previous: list[str] = []
    while time.monotonic() < deadline:
        found = sorted(await admin.aggregator_devices(name))
        if found and found == previous:
            return found
        previous = found
        await asyncio.sleep(interval)
    return previous


async def run_device(
    harness: Harness,
    device: Device,
    procedures: list[Procedure],
    progress: Progress,
    results: list[ProcedureResult],
) -> None:
    """A device's procedures one after another (its own groups, programs, holds)."""
    claimed = set(device.spec.function_sets)
    if device.spec.device_class == "aggregator" and not device.members:
        await start_process(device, harness)
        device.discovered = await discover_members(harness.admin, device.name)
        if not device.discovered:
            log.warning("aggregator %s registered no EndDevices within 60 s", device.name)
    for procedure in procedures:
        why_not = procedure.applies(device.spec.device_class, claimed)
        if why_not is not None:
            result = ProcedureResult(
                procedure.id,
                device.name,
                "not-applicable",
                procedure.title,
                procedure.clause,
                why_not,
            )
            results.append(result)
            progress.finished(result)
            continue
        progress.started(device.name, procedure.id)
        per_procedure = device.spec.restart == "per-procedure"

        async def start() -> None:
            await start_process(device, harness)

        run = ProcedureRun(harness, device, procedure)
        if procedure.exclusive:
            run.notes.append(
                "ran alone, after the concurrent part of the campaign (global clock or rates)"
            )
        result = await run.run(start)
        process = device.process
        if process is not None and process.returncode is not None:
            result.notes.append(
                f"the device process exited with code {process.returncode} during the "
                f"procedure (see {device.directory / 'device.log'})"
            )
            device.process = None
        if per_procedure:
            await stop_process(device)
        results.append(result)
        progress.finished(result)


async def prepare_devices(harness: Harness, devices: list[Device]) -> None:
    """Pre-register every device (and an aggregator's EndDevices) out of band."""
    admin = harness.admin
    for device in devices:
        await admin.remove_device(device.lfdi)
        if device.spec.device_class == "aggregator":
            await admin.create_aggregator(device.name)
            await admin.attach_certificate(device.name, device.lfdi)
            for managed in device.spec.managed:
                await admin.remove_device(managed.lfdi)
                await admin.preregister(managed.lfdi, managed.sfdi, aggregator=device.name)
        else:
            await admin.preregister(device.lfdi, device.sfdi, pin=device.spec.pin)


async def run_campaign(
    harness: Harness,
    devices: list[Device],
    procedures: list[Procedure],
    name: str,
    concurrency: int,
    progress: Progress,
) -> Campaign:
    campaign = Campaign(name=name, mode="device")
    campaign.devices = [d.describe() for d in devices]
    campaign.procedures = [p.id for p in procedures]
    client = [p for p in procedures if p.side == "client"]
    concurrent = [p for p in client if not p.exclusive]
    alone = [p for p in client if p.exclusive]
    if alone:
        campaign.notes.append(
            "Procedures that move the global server clock or pollRates ran one at a time after "
            "the concurrent part: " + ", ".join(p.id for p in alone)
        )
    server_side = [p for p in procedures if p.side == "server"]
    results: list[ProcedureResult] = []
    for procedure in server_side:
        for device in devices:
            result = ProcedureResult(
                procedure.id,
                device.name,
                "not-applicable",
                procedure.title,
                procedure.clause,
                "a server-side procedure: run it with `csip conformance run --server`",
            )
            results.append(result)
            progress.finished(result)
    await prepare_devices(harness, devices)
    gate = asyncio.Semaphore(concurrency)

    async def one(device: Device) -> None:
        async with gate:
            await run_device(harness, device, concurrent, progress, results)

    try:
        await asyncio.gather(*(one(d) for d in devices))
        for procedure in alone:
            for device in devices:
                await run_device(harness, device, [procedure], progress, results)
    finally:
        for device in devices:
            await stop_process(device)
    order = {p: i for i, p in enumerate(campaign.procedures)}
    names = {d.name: i for i, d in enumerate(devices)}
    results.sort(key=lambda r: (order.get(r.procedure, 0), names.get(r.device, 0)))
    campaign.results = results
    campaign.finished = time.time()
    return campaign


def resolve_devices(lab: Lab, out: Path) -> list[Device]:
    """Each device's LFDI/SFDI, from its certificate when it has one (before csip starts)."""
    devices = []
    for spec in lab.device:
        if spec.certificate is not None:
            try:
                lfdi, sfdi = lfdi_of_certificate(spec.certificate)
            except (OSError, ValueError) as exc:
                raise LabError(
                    f"device {spec.name}: cannot read {spec.certificate}: {exc}"
                ) from None
        else:
            lfdi, sfdi = str(spec.lfdi).upper(), int(spec.sfdi or 0)
        devices.append(Device(spec, lfdi.upper(), sfdi, out / "devices" / spec.name))
    return devices


class LabError(RuntimeError):
    """A lab.toml that names something unusable (a certificate that cannot be read)."""


def server_settings(lab: Lab, out: Path) -> Any:
    """csip's settings as the test server: loopback, SQLite in the results directory."""
    from csip.config import Settings

    out.mkdir(parents=True, exist_ok=True)
    server_dir = Path(tempfile.mkdtemp(prefix="server-", dir=out))
    certs = lab.server.certs_dir or Path(__file__).resolve().parents[3] / "certs"
    return Settings(
        data_dir=server_dir,
        db=f"sqlite+aiosqlite:///{server_dir / 'csip.db'}",
        host=lab.server.host,
        sep2_port=lab.server.sep2_port,
        admin_port=0,
        vtn_port=0,
        certs_dir=certs,
        profile=lab.server.profile,
        schema_dir=lab.server.schema_dir,
        notification_allow_private=True,
    ).validate()


async def run_lab(
    lab: Lab,
    procedures: list[Procedure],
    out: Path,
    stream: TextIO | None = None,
) -> Campaign:
    """Start csip in-process (SQLite under `out`), run the campaign, stop csip."""
    from csip.services.admin import admin_token
    from csip.web.server import Server

    recorder = Recorder()
    devices = resolve_devices(lab, out)
    settings = server_settings(lab, out)
    server = Server(settings, sep2_hook=recorder.attach)
    await server.start()
    assert server.store is not None and server.outbox is not None and server.notifier
    server.outbox.register("sep2", recorder.wrap_sender(server.notifier))
    admin = CsipAdmin(
        f"http://{settings.admin_host}:{server.admin_port}",
        await admin_token(server.store, data_dir=settings.data_dir),
    )
    host = "localhost" if settings.host in ("127.0.0.1", "::1") else settings.host
    try:
        poll_rates = await admin.poll_rates()
        if lab.campaign.poll_rates:
            await admin.set_poll_rates(lab.campaign.poll_rates)
            poll_rates.update(lab.campaign.poll_rates)
        harness = Harness(
            admin,
            recorder,
            f"https://{host}:{server.sep2_port}",
            settings.tls_files()[0],
            out,
            poll_rates,
        )
        total = len(procedures) * len(devices)
        progress = Progress(total, stream)
        recorder.listeners.append(progress.exchange)
        try:
            campaign = await run_campaign(
                harness, devices, procedures, lab.campaign.name, lab.campaign.concurrency, progress
            )
        finally:
            progress.close()
        campaign.server = {
            "csip": f"in-process, {harness.url}",
            "profile": settings.profile,
            "pollRates": ", ".join(f"{k}={v}s" for k, v in sorted(poll_rates.items())),
        }
        return campaign
    finally:
        await admin.close()
        await server.stop()
