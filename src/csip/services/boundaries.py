"""Time-driven notifications: DERControlList (and DERProgramList) subscribers hear when a
control starts or ends, with no write in between (issue 10 item 7).

The render cache already knows each program's next boundary, but only for programs someone
read, and it acts lazily on the next read; notifications must go out when the moment passes
whether or not anyone polls. So one task per worker keeps, for every program, the moments
still to tell (domain.der.untold_notices), sleeps until the earliest of them, and tells the
programs whose moments the clock reached. It does not poll: it wakes when

* the clock moves (Clock.subscribe: a lab or test jumping ahead makes moments pass at once),
* a write reaches this worker (through the bus, from this worker or another one): the
  programs whose `program()` tag changed are re-read, which may bring the next moment
  earlier; a drop-everything (a moved clock in another worker, a lab reset) re-reads all,
* or, at the latest, every `max_sleep` seconds (nothing is read then unless a moment passed).

Telling is one unit of work: the (program, moment) claims are inserted with ON CONFLICT DO
NOTHING (store.der.insert_boundary_notices) and, for the programs this worker claimed, a
ControlBoundaryPassed change is recorded, which services/changes.py maps to the outbox intents
of their subscribers, in the same transaction. With several workers on PostgreSQL every one of
them passes the moment, and the database decides which one tells it: each subscriber hears of a
boundary once. A SIGKILL between claim and commit rolls both back; after commit the outbox
owns delivery. A worker that starts resumes from the last moment told, so boundaries passed
while no worker ran are told on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from csip.domain.changes import ControlBoundaryPassed
from csip.domain.clock import Clock
from csip.domain.der import due_notices, next_notice, untold_notices
from csip.services import changes as tag
from csip.services.bus import EVERYTHING, LocalBus
from csip.services.changes import Changes
from csip.store import Store
from csip.store import der as der_store

log = logging.getLogger(__name__)

#: A write whose transaction began before a moment it defines may commit after this worker
#: passed that moment: moments this far back are still told if nobody has (the claims
#: dedupe). Also the margin of the resume point on start.
LOOKBACK = 60
#: Claims older than this behind the clock are pruned (they only dedupe recent moments and
#: mark where a starting worker resumes).
KEEP_CLAIMS = 7 * 86400
#: Seconds before trying again after a failed pass (not a tight loop on a database that is down).
RETRY = 1.0


class BoundaryNotices:
    """One per worker; several workers on one PostgreSQL tell each boundary once."""

    def __init__(
        self, store: Store, changes: Changes, clock: Clock, bus: LocalBus, max_sleep: float = 60.0
    ) -> None:
        self.store = store
        self.changes = changes
        self.clock = clock
        self.max_sleep = max_sleep
        #: program id -> its moments still to tell (ascending), later than `floor`.
        self.pending: dict[int, list[int]] = {}
        #: program id -> its group (None: deleted), for the DERProgramList it is listed in.
        self.groups: dict[int, int | None] = {}
        #: (program, moment) pairs told (by this worker or, as found claimed, another one).
        self.told: set[tuple[int, int]] = set()
        #: Moments at or before this are not considered (told, or before this worker's time).
        self.floor = 0
        #: The server-clock second up to which every passed moment has been told (tests wait
        #: for it; a moved-back clock lowers it).
        self.horizon = 0
        #: Boundaries this worker told (claimed), for tests and the status page.
        self.claimed = 0
        self._dirty: set[int] = set()
        self._reload = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        bus.subscribe(self._on_tags)
        clock.subscribe(self.wake)

    def wake(self) -> None:
        self._wake.set()

    def _on_tags(self, tags: list[str]) -> None:
        for name in tags:
            if name == EVERYTHING:
                self._reload = True
                continue
            program = tag.program_of(name)
            if program is not None:
                self._dirty.add(program)
        if self._reload or self._dirty:
            self._wake.set()

    async def start(self) -> None:
        await self.resume()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="boundaries")

    async def resume(self) -> None:
        """Start from the last moment told (with LOOKBACK), or from now on a new database."""
        now = self.clock.now_int()
        async with self.store.transaction() as s:
            last = await der_store.select_last_boundary_notice(s, now)
        self.floor = (now if last is None else last) - LOOKBACK
        self.horizon = self.floor
        self._reload = True

    async def stop(self) -> None:
        self.clock.unsubscribe(self.wake)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            timeout = None
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: read everything again soon
                log.exception("telling control boundaries failed")
                self._reload = True
                timeout = RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout or self._sleep())

    def _sleep(self) -> float:
        upcoming = next_notice(self.pending)
        if upcoming is None:
            return self.max_sleep
        return max(0.0, min(self.max_sleep, upcoming - self.clock.now()))

    async def run_once(self) -> None:
        """Re-read what writes changed, tell what the clock reached."""
        now = self.clock.now_int()
        if now < self.horizon:  # moved back: moments ahead of it may pass again (claims dedupe)
            self.floor = min(self.floor, now - LOOKBACK)
            self._reload = True
        await self._refresh()
        due = due_notices(self.pending, now)
        if due:
            await self._tell(due, now)
        self.horizon = now
        if now - LOOKBACK > self.floor:
            self.floor = now - LOOKBACK
            self.told = {(p, m) for p, m in self.told if m > self.floor}

    async def _refresh(self) -> None:
        reload, dirty = self._reload, self._dirty
        self._reload, self._dirty = False, set()
        if not reload and not dirty:
            return
        try:
            async with self.store.transaction() as s:
                found = await der_store.select_controls_ending_after(
                    s, self.floor, None if reload else sorted(dirty)
                )
        except BaseException:
            self._reload, self._dirty = self._reload or reload, self._dirty | dirty
            raise
        controls, groups = found
        if reload:  # the claims are the truth (a lab reset starts program ids again on SQLite)
            self.told = set()
        pending = untold_notices(controls, self.floor, self.told)
        if reload:
            self.pending, self.groups = pending, groups
            return
        for program in dirty:
            self.pending.pop(program, None)
        self.pending.update(pending)
        self.groups.update(groups)

    async def _tell(self, due: dict[int, list[int]], now: int) -> None:
        pairs = [(program, moment) for program, moments in due.items() for moment in moments]
        async with self.changes.unit_of_work() as tx:
            claimed = await der_store.insert_boundary_notices(tx.session, pairs)
            for program in sorted({p for p, _ in claimed}):
                tx.record(ControlBoundaryPassed(program, self.groups.get(program)))
            if claimed:
                await der_store.delete_boundary_notices_before(tx.session, now - KEEP_CLAIMS)
        self.claimed += len(claimed)
        self.told.update(pairs)
        for program, moments in due.items():
            left = self.pending[program][len(moments) :]
            if left:
                self.pending[program] = left
            else:
                del self.pending[program]
