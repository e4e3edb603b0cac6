"""The sans-IO core of a simulated OEM device: given the documents it has read and `now`,
what the device does next. Pure: no sockets, no clock, no randomness beyond a seed.

The rules, in plain words (IEEE 2030.5 §12.1 events, §10.10 DER; CSIP IG §6):

* An event is every DERControl the device has seen, tracked by mRID. Its own start is the
  control's start plus a random offset in [0, randomizeStart] (or [randomizeStart, 0]) drawn
  once per event from a seed, so a fleet spreads out (§12.1.3.1); the end moves with it.
* What applies at `now`, mode by mode: among the live events (not cancelled, not superseded)
  whose window holds `now`, the one of the program with the lowest primacy wins, then the
  newest creationTime (§12.1.3.3); modes no event sets come from the DefaultDERControl of
  the lowest primacy that sets them (§10.10.3.3).
* Responses (Table 27, DER rows), when the control asks for them in responseRequired: bit 0
  "received" (1) the first time the device sees it; bit 1 the specific ones: started (2) when
  its window opens and it wins a mode, completed (3) when its window closes, cancelled (6)
  when the server cancels it, superseded (7) when the server supersedes it or, at its start,
  a higher-priority program has taken every mode it sets.
* A battery integrates the power it gives (positive = discharging, export) into its state of
  charge within its rating, its capacity and its reserve: it never discharges below the
  reserve, never charges above full. A PV inverter generates what its panels give, capped
  by the limits in force, and follows a volt-var curve (opModVoltVar) for reactive power.

Faults change exactly one of those rules each (see ``Faults``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RECEIVED = 1
STARTED = 2
COMPLETED = 3
OPTED_OUT = 4
CANCELLED = 6
SUPERSEDED = 7

#: EventStatus currentStatus values (sep.xsd).
STATUS_CANCELLED = (2, 3)
STATUS_SUPERSEDED = 4

#: What a device that "answers with wrong Response codes" sends instead.
WRONG_CODES: dict[int, int] = {
    RECEIVED: STARTED,
    STARTED: COMPLETED,
    COMPLETED: RECEIVED,
    6: 3,
    7: 3,
}

#: Not operating modes: parameters of a control.
NOT_MODES = frozenset({"rampTms"})
#: Modes that set the same quantity: the first control (by priority) setting one of a family
#: sets the quantity, whichever mode it uses.
FAMILIES: dict[str, str] = {
    "opModFixedW": "active power",
    "opModTargetW": "active power",
    "opModFixedVar": "reactive power",
    "opModTargetVar": "reactive power",
    "opModVoltVar": "reactive power",
    "opModFixedPFInjectW": "reactive power",
    "opModFixedPFAbsorbW": "reactive power",
}


@dataclass(frozen=True, slots=True)
class ControlDoc:
    """A DERControl as the device read it (times in seconds since the epoch)."""

    mrid: str
    program: str
    primacy: int
    creation_time: int
    start: int
    duration: int
    status: int
    base: Mapping[str, Any]
    randomize_start: int = 0
    response_required: int = 0
    reply_to: str | None = None
    href: str = ""

    @property
    def modes(self) -> frozenset[str]:
        return frozenset(self.base) - NOT_MODES


@dataclass(frozen=True, slots=True)
class DefaultDoc:
    program: str
    primacy: int
    mrid: str
    base: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CurveDoc:
    """A DERCurve with its points scaled: x and y as plain numbers (percent)."""

    href: str
    curve_type: int
    points: tuple[tuple[float, float], ...]

    def y(self, x: float) -> float:
        """Linear interpolation, flat beyond the first and last points."""
        points = sorted(self.points)
        if not points:
            return 0.0
        if x <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if x <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return points[-1][1]


@dataclass(frozen=True, slots=True)
class Faults:
    """One misbehaviour each (a well-behaved device has none)."""

    #: keeps running a cancelled control and never answers 6
    ignores_cancellation: bool = False
    #: sends the codes of WRONG_CODES instead of the right ones
    wrong_response_codes: bool = False
    #: posts Responses and readings with this LFDI instead of its own
    foreign_lfdi: str | None = None
    #: posts readings this many times less often than the postRate asks
    post_rate_factor: float = 1.0
    #: starts every event at its nominal start, whatever randomizeStart says
    ignores_randomize_start: bool = False
    #: after a 404 on its EndDevice keeps polling the same hrefs instead of rediscovering
    polls_after_404: bool = False

    @property
    def any(self) -> bool:
        return self != Faults()


#: The faulty kinds `csip sim --kind faulty-...` offers, each one fault.
FAULTS: dict[str, Faults] = {
    "ignores-cancel": Faults(ignores_cancellation=True),
    "wrong-codes": Faults(wrong_response_codes=True),
    "foreign-lfdi": Faults(foreign_lfdi="0" * 40),
    "posts-rarely": Faults(post_rate_factor=4.0),
    "ignores-randomize": Faults(ignores_randomize_start=True),
    "polls-after-404": Faults(polls_after_404=True),
}


@dataclass(frozen=True, slots=True)
class OemProfile:
    """What one OEM's firmware does: its device class, ratings and timing habits."""

    name: str = "generic"
    #: "battery" or "pv"
    kind: str = "battery"
    rated_w: float = 5000.0
    rated_var: float = 3000.0
    capacity_wh: float = 10000.0
    #: state of charge it never discharges below, percent of capacity
    reserve_pct: float = 20.0
    initial_soc_pct: float = 50.0
    #: seconds between program walks; None = the server's pollRate
    poll_rate: int | None = None
    #: seconds between readings; None = the MirrorUsagePoint's postRate
    post_rate: int | None = None
    #: seconds between reads of /tm (its clock follows the server's); None = 900 (the Time
    #: pollRate csip gives); 0 = at every walk, for labs that move the server clock
    time_sync: int | None = None
    #: subscribe to its DERControlLists and poll only every `subscribed_poll_factor` pollRates
    subscribe: bool = False
    subscribed_poll_factor: int = 4
    #: PV: what the panels give, percent of rated_w; grid voltage and its swing
    pv_available_pct: float = 80.0
    nominal_v: float = 230.0
    voltage_swing_pct: float = 6.0
    voltage_period_s: int = 600
    faults: Faults = field(default_factory=Faults)
    #: PUT DERCapability/DERSettings, create a MirrorUsagePoint and post readings; False for
    #: load runs that measure polling alone
    announces: bool = True


@dataclass(frozen=True, slots=True)
class OutgoingResponse:
    reply_to: str
    subject: str
    lfdi: str
    status: int
    created: int


@dataclass(frozen=True, slots=True)
class Quantity:
    """One reading a device mirrors (ReadingType uom/multiplier/kind/phase, integer value)."""

    name: str
    uom: int
    multiplier: int
    value: int
    kind: int = 37
    phase: int = 0


@dataclass(frozen=True, slots=True)
class Setpoint:
    w: float
    var: float
    #: the winning control (mRID) or default ("default:<mRID>") per mode
    sources: Mapping[str, str]


@dataclass(slots=True)
class Event:
    doc: ControlDoc
    offset: int
    first_seen: int
    received: bool = False
    started: bool = False
    final: bool = False

    @property
    def start(self) -> int:
        return self.doc.start + self.offset

    @property
    def end(self) -> int:
        return self.doc.start + self.doc.duration + self.offset


def random_offset(seed: str, mrid: str, randomize: int) -> int:
    """A deterministic draw in [0, randomize] (or [randomize, 0]) per device and event."""
    if randomize == 0:
        return 0
    digest = int.from_bytes(hashlib.sha256(f"{seed}/{mrid}".encode()).digest()[:8], "big")
    magnitude = digest % (abs(randomize) + 1)
    return magnitude if randomize > 0 else -magnitude


def _power(value: Any) -> float:
    """ActivePower/ReactivePower {multiplier, value} or a plain number, in W."""
    if isinstance(value, Mapping):
        return float(value.get("value", 0)) * 10.0 ** int(value.get("multiplier", 0))
    return float(value)


class DeviceCore:
    """One simulated device's state and decisions. Feed it documents (`update_program`) and
    time (`step`); it answers with the Responses to send and keeps its physics."""

    def __init__(self, lfdi: str, profile: OemProfile, now: int, seed: str | None = None) -> None:
        self.lfdi = lfdi
        self.profile = profile
        self.faults = profile.faults
        self.seed = seed if seed is not None else lfdi
        self.t = now
        self.soc_wh = profile.capacity_wh * profile.initial_soc_pct / 100.0
        self.energy_out_wh = 0.0
        self.events: dict[str, Event] = {}
        self.defaults: dict[str, DefaultDoc] = {}
        self.curves: dict[str, CurveDoc] = {}
        self.last_setpoint = Setpoint(0.0, 0.0, {})
        self.next_post: int | None = None
        #: when the last readings were taken and the energy out then: the next readings
        #: describe the time since (mean power), as a meter's interval data does
        self.last_post: tuple[int, float] | None = None
        #: the (start, duration) the readings `telemetry_due` last returned describe
        self.window: tuple[int, int] = (now, 0)
        #: the customer opted out: every event seen is answered 4 and not followed
        self.opted_out = False

    # ---- documents -------------------------------------------------------------------------
    @property
    def reserve_wh(self) -> float:
        return self.profile.capacity_wh * self.profile.reserve_pct / 100.0

    @property
    def soc_pct(self) -> float:
        if self.profile.capacity_wh <= 0:
            return 0.0
        return 100.0 * self.soc_wh / self.profile.capacity_wh

    def update_program(
        self,
        program: str,
        controls: Iterable[ControlDoc],
        default: DefaultDoc | None,
        curves: Mapping[str, CurveDoc] | None = None,
        now: int | None = None,
    ) -> None:
        """What one DERProgram says now (a poll or a notification): its controls, default."""
        self.update_controls(controls, now)
        if default is None:
            self.defaults.pop(program, None)
        else:
            self.defaults[program] = default
        self.curves.update(curves or {})

    def update_controls(self, controls: Iterable[ControlDoc], now: int | None = None) -> None:
        """Controls from a notification (a DERControlList): the program's default stays."""
        seen = self.t if now is None else now
        for doc in controls:
            self._see(doc, seen)

    def _see(self, doc: ControlDoc, seen: int) -> None:
        event = self.events.get(doc.mrid)
        if event is None:
            randomize = 0 if self.faults.ignores_randomize_start else doc.randomize_start
            offset = random_offset(self.seed, doc.mrid, randomize)
            self.events[doc.mrid] = Event(doc, offset, seen)
        else:
            event.doc = doc

    def forget_programs(self, keep: Iterable[str]) -> None:
        """Programs no longer reaching the device: their defaults stop applying."""
        kept = set(keep)
        for program in [p for p in self.defaults if p not in kept]:
            del self.defaults[program]

    # ---- what applies ----------------------------------------------------------------------
    def _cancelled(self, event: Event) -> bool:
        return event.doc.status in STATUS_CANCELLED and not self.faults.ignores_cancellation

    def _live(self, event: Event) -> bool:
        if self.opted_out:
            return False
        return not self._cancelled(event) and event.doc.status != STATUS_SUPERSEDED

    def opt_out(self) -> None:
        """The customer opts out (at the device's screen, say): every event it has seen or
        will see is answered "opted out" (4) and no longer followed."""
        self.opted_out = True

    def winners(self, now: int) -> dict[str, ControlDoc | DefaultDoc]:
        """The control (or default) in force for each mode at `now`."""
        running = sorted(
            (e.doc for e in self.events.values() if self._live(e) and e.start <= now < e.end),
            key=lambda d: (d.primacy, -d.creation_time, d.mrid),
        )
        defaults = sorted(self.defaults.values(), key=lambda d: (d.primacy, d.mrid))
        chosen: dict[str, ControlDoc | DefaultDoc] = {}
        claimed: set[str] = set()
        ordered: list[ControlDoc | DefaultDoc] = [*running, *defaults]
        for doc in ordered:
            taken: set[str] = set()
            for mode in sorted(frozenset(doc.base) - NOT_MODES):
                family = FAMILIES.get(mode, mode)
                if family not in claimed:
                    chosen[mode] = doc
                    taken.add(family)
            claimed |= taken
        return chosen

    def setpoint(self, now: int) -> Setpoint:
        chosen = self.winners(now)
        modes = {mode: doc.base[mode] for mode, doc in chosen.items()}
        sources = {
            mode: doc.mrid if isinstance(doc, ControlDoc) else f"default:{doc.mrid}"
            for mode, doc in chosen.items()
        }
        profile = self.profile
        if modes.get("opModConnect") is False or modes.get("opModEnergize") is False:
            return Setpoint(0.0, 0.0, sources)
        w = profile.rated_w * profile.pv_available_pct / 100.0 if profile.kind == "pv" else 0.0
        if "opModFixedW" in modes:
            w = float(modes["opModFixedW"]) / 10000.0 * profile.rated_w
        if "opModTargetW" in modes:
            w = _power(modes["opModTargetW"])
        if "opModMaxLimW" in modes:
            w = min(w, float(modes["opModMaxLimW"]) / 10000.0 * profile.rated_w)
        for name in ("opModExpLimW", "opModGenLimW"):
            if name in modes:
                w = min(w, _power(modes[name]))
        for name in ("opModImpLimW", "opModLoadLimW"):
            if name in modes:
                w = max(w, -_power(modes[name]))
        floor = 0.0 if profile.kind == "pv" else -profile.rated_w
        if profile.kind == "pv":
            w = min(w, profile.rated_w * profile.pv_available_pct / 100.0)
        w = max(floor, min(profile.rated_w, w))
        return Setpoint(w, self._var(modes, now), sources)

    def voltage(self, now: int) -> float:
        p = self.profile
        swing = p.voltage_swing_pct / 100.0 * math.sin(2 * math.pi * now / p.voltage_period_s)
        return p.nominal_v * (1.0 + swing)

    def _var(self, modes: Mapping[str, Any], now: int) -> float:
        rated = self.profile.rated_var
        var = 0.0
        if "opModVoltVar" in modes:
            curve = self.curves.get(str(modes["opModVoltVar"]))
            if curve is not None:
                var = curve.y(100.0 * self.voltage(now) / self.profile.nominal_v) / 100.0 * rated
        if "opModFixedVar" in modes:
            fixed = modes["opModFixedVar"]
            value = fixed.get("value", 0) if isinstance(fixed, Mapping) else fixed
            var = float(value) / 10000.0 * rated
        if "opModTargetVar" in modes:
            var = _power(modes["opModTargetVar"])
        return max(-rated, min(rated, var))

    # ---- time ------------------------------------------------------------------------------
    def boundaries(self, after: int, until: int) -> list[int]:
        """Instants in (after, until] at which what applies may change."""
        moments = {
            moment
            for event in self.events.values()
            for moment in (event.start, event.end)
            if after < moment <= until
        }
        return sorted(moments)

    def next_boundary(self, now: int) -> int | None:
        later = [
            m for e in self.events.values() if not e.final for m in (e.start, e.end) if m > now
        ]
        return min(later) if later else None

    def advance(self, now: int) -> None:
        """Integrate the physics from the last step to `now`, piecewise at event boundaries."""
        if now <= self.t:
            return
        moments = [*self.boundaries(self.t, now), now]
        for moment in moments:
            if moment > self.t:
                self._integrate(self.setpoint(self.t), moment - self.t)
                self.t = moment
        self.last_setpoint = self.setpoint(now)

    def _integrate(self, setpoint: Setpoint, seconds: int) -> None:
        if self.profile.kind != "battery":
            self.energy_out_wh += setpoint.w * seconds / 3600.0
            return
        energy = setpoint.w * seconds / 3600.0  # Wh out of the battery
        if energy > 0:
            energy = min(energy, max(0.0, self.soc_wh - self.reserve_wh))
        else:
            energy = max(energy, -max(0.0, self.profile.capacity_wh - self.soc_wh))
        self.soc_wh -= energy
        self.energy_out_wh += energy

    def actual_w(self, now: int) -> float:
        """The power the battery can actually give at `now` (0 when the reserve stops it)."""
        w = self.setpoint(now).w
        if self.profile.kind == "battery":
            if w > 0 and self.soc_wh <= self.reserve_wh:
                return 0.0
            if w < 0 and self.soc_wh >= self.profile.capacity_wh:
                return 0.0
        return w

    def step(self, now: int) -> list[OutgoingResponse]:
        """Advance to `now`; the Responses now due, in the order to send them."""
        self.advance(now)
        out: list[OutgoingResponse] = []
        for event in sorted(self.events.values(), key=lambda e: (e.doc.start, e.doc.mrid)):
            if event.final:
                continue
            out.extend(self._respond(event, now))
        return out

    def _respond(self, event: Event, now: int) -> list[OutgoingResponse]:
        codes: list[int] = []
        if not event.received:
            event.received = True
            codes.append(RECEIVED)
        if self.opted_out:
            codes.append(OPTED_OUT)
            event.final = True
        elif self._cancelled(event):
            codes.append(CANCELLED)
            event.final = True
        elif event.doc.status == STATUS_SUPERSEDED:
            codes.append(SUPERSEDED)
            event.final = True
        elif now >= event.end:
            if not event.started and event.first_seen < event.end:
                codes.append(STARTED)  # it ran while we were between steps
                event.started = True
            if event.started:
                codes.append(COMPLETED)
            event.final = True
        elif now >= event.start and not event.started:
            mine = {
                m for m, d in self.winners(now).items() if getattr(d, "mrid", "") == event.doc.mrid
            }
            if mine or not event.doc.modes:
                codes.append(STARTED)
                event.started = True
            else:
                codes.append(SUPERSEDED)
                event.final = True
        return [r for r in (self._response(event.doc, c, now) for c in codes) if r is not None]

    def _response(self, doc: ControlDoc, code: int, now: int) -> OutgoingResponse | None:
        # an opt-out is said whatever the control asked for: the utility must know
        wanted = code == OPTED_OUT or doc.response_required & (1 if code == RECEIVED else 2)
        if not wanted or doc.reply_to is None:
            return None
        if self.faults.wrong_response_codes:
            code = WRONG_CODES.get(code, code)
        lfdi = self.faults.foreign_lfdi or self.lfdi
        return OutgoingResponse(doc.reply_to, doc.mrid, lfdi, code, now)

    # ---- telemetry -------------------------------------------------------------------------
    def quantities(self, now: int) -> list[Quantity]:
        """What the device mirrors: W, var, V, and for a battery the state of charge."""
        setpoint = self.setpoint(now)
        out = [
            Quantity("W", 38, 0, round(self.actual_w(now))),
            Quantity("var", 63, 0, round(setpoint.var)),
            Quantity("V", 29, -1, round(self.voltage(now) * 10)),
        ]
        if self.profile.kind == "battery":
            out.append(Quantity("SoC", 0, -2, round(self.soc_pct * 100), kind=0))
        return out

    def post_interval(self, server_post_rate: int) -> int:
        rate = self.profile.post_rate or server_post_rate
        return max(1, round(rate * self.faults.post_rate_factor))

    def telemetry_due(self, now: int, server_post_rate: int) -> list[Quantity] | None:
        """The readings to post at `now`, or None before the next post is due. After the
        first post, W is the mean power since the previous post (energy out over the time,
        so a moved clock is accounted for whole); `window` says which time they describe."""
        if self.next_post is not None and now < self.next_post:
            return None
        self.advance(now)
        interval = self.post_interval(server_post_rate)
        self.next_post = now + interval
        quantities = self.quantities(now)
        if self.last_post is not None and now > self.last_post[0]:
            since, energy = self.last_post
            mean = (self.energy_out_wh - energy) * 3600 / (now - since)
            quantities[0] = Quantity("W", 38, 0, round(mean))
            self.window = (since, now - since)
        else:
            self.window = (now - interval, interval)
        self.last_post = (now, self.energy_out_wh)
        return quantities
