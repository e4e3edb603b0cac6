"""`csip serve --workers N`: N processes serving every listener on the same ports.

The parent runs the one-time set-up (schema migration, VTN key), reserves each port (bound,
not listening, so an ephemeral port 0 becomes one port every worker shares), starts the
workers and supervises them; it serves nothing itself. Each worker is a whole csip process
(csip.web.server.Server) that binds its listeners with SO_REUSEPORT, so the kernel spreads
new connections over the workers. Caches invalidate across workers through PostgreSQL
(LISTEN/NOTIFY), and the outbox is claimed with leases, so several workers need PostgreSQL
and a worker killed with SIGKILL loses nothing: the others keep serving, its leased outbox
rows are delivered by another worker once the lease ends, and the parent starts a new one.

SIGTERM or SIGINT to the parent stops every worker (SIGTERM, then SIGKILL after a grace
period); a worker whose parent disappears stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from csip.config import Settings
from csip.errors import CsipError
from csip.metrics import MULTIPROC_ENV, mark_worker_dead, prepare_multiprocess

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after starting is restarted only after this delay.
RESTART_DELAY = 1.0
#: How long workers get to stop after SIGTERM before SIGKILL.
STOP_GRACE = 15.0
#: How long the first start of every worker may take.
START_TIMEOUT = 120.0


def sqlite_refusal(settings: Settings) -> str | None:
    """Why `settings.workers` cannot run on this database, or None."""
    if settings.workers > 1 and not settings.db_url.startswith("postgresql"):
        return (
            f"--workers {settings.workers} needs PostgreSQL: SQLite is one process "
            "(caches of several workers invalidate through PostgreSQL). Use --workers 1, "
            "or --db postgresql+asyncpg://user@host/dbname"
        )
    return None


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(coroutine)


# ---- a worker ----------------------------------------------------------------------------
async def _serve(settings: Settings, index: int, parent: Connection) -> None:
    from csip.web.server import Server

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    # the parent never writes: readable means it has gone (EOF), so stop rather than linger
    loop.add_reader(parent.fileno(), stopped.set)
    server = Server(settings, reuse_port=True)
    await server.start()
    try:
        parent.send(("ready", index, os.getpid()))
        await stopped.wait()
    finally:
        loop.remove_reader(parent.fileno())
        await server.stop()


def worker_main(settings: Settings, index: int, parent: Connection) -> None:
    """The entry point of worker `index` (a spawned process)."""
    from csip.logconfig import configure_logging

    configure_logging(settings, index)
    try:
        _run(_serve(settings, index, parent))
    except CsipError as exc:
        print(f"csip: error (worker {index}): {exc.detail}", file=sys.stderr, flush=True)
        sys.exit(1)


# ---- the parent ----------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    started: float
    ready: bool = False


class Supervisor:
    """Starts `settings.workers` workers, restarts any that dies, stops them all on a signal."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        #: Workers that ended, by index: when to start their successor.
        self.pending: dict[int, float] = {}

    def _spawn(self, index: int) -> _Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=worker_main,
            args=(self.settings, index, theirs),
            name=f"csip-worker-{index}",
            daemon=False,
        )
        process.start()
        theirs.close()
        worker = _Worker(index, process, ours, time.monotonic())
        self.workers[index] = worker
        return worker

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _receive(self, worker: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):
            while worker.conn.poll():
                message = worker.conn.recv()
                if message and message[0] == "ready":
                    worker.ready = True
                    log.info("worker %d ready (pid %d)", worker.index, message[2])

    def _reap(self, worker: _Worker) -> int | None:
        """The exit code of a worker that has ended, else None."""
        if worker.process.is_alive():
            return None
        worker.process.join()
        worker.conn.close()
        return worker.process.exitcode

    def _wait(self, timeout: float) -> None:
        objects: list[Any] = []
        for index, worker in self.workers.items():
            if index in self.pending:
                continue
            objects.append(worker.process.sentinel)
            if not worker.conn.closed:
                objects.append(worker.conn)
        with contextlib.suppress(InterruptedError):
            wait(objects, timeout)

    def start(self) -> bool:
        """Start every worker and wait until each listens; False if one failed to start."""
        for index in range(self.settings.workers):
            self._spawn(index)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.stopping and time.monotonic() < deadline:
            for worker in self.workers.values():
                self._receive(worker)
                if not worker.ready and not worker.process.is_alive():
                    log.error("worker %d exited (code %s) while starting", worker.index,
                              worker.process.exitcode)  # fmt: skip
                    return False
            if all(w.ready for w in self.workers.values()):
                return True
            self._wait(0.5)
        return False

    def supervise(self) -> None:
        """Until a signal: restart any worker that ends."""
        while not self.stopping:
            self._wait(0.5)
            now = time.monotonic()
            for index, worker in list(self.workers.items()):
                if index in self.pending:
                    continue
                self._receive(worker)
                code = self._reap(worker)
                if code is not None:
                    if worker.process.pid is not None:
                        mark_worker_dead(worker.process.pid)
                    log.warning("worker %d (pid %s) exited with code %s: starting a new one",
                                index, worker.process.pid, code)  # fmt: skip
                    lived = now - worker.started
                    self.pending[index] = now + (RESTART_DELAY if lived < RESTART_DELAY else 0)
            for index, when in list(self.pending.items()):
                if time.monotonic() >= when and not self.stopping:
                    del self.pending[index]
                    self._spawn(index)

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.process.is_alive() and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self.workers.values():
            if worker.process.exitcode is not None:
                continue
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            if not worker.conn.closed:
                worker.conn.close()


def run_workers(settings: Settings, banner: str) -> int:
    """Serve with `settings.workers` processes until SIGTERM/SIGINT; the exit code."""
    from csip.app import prepare
    from csip.web.server import bind_all, tls_context, urls

    tls_context(settings)  # a missing PKI is reported once, here, not by every worker
    _run(prepare(settings))
    # every worker's metrics in files one scrape adds up (csip.metrics, multiprocess mode)
    metrics_dir = Path(tempfile.mkdtemp(prefix="csip-metrics-"))
    prepare_multiprocess(metrics_dir)
    settled, holders = bind_all(settings, reuse_port=True, listen=False)
    supervisor = Supervisor(settled)
    previous = {
        signum: signal.signal(signum, supervisor._on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        if not supervisor.start():
            if supervisor.stopping:
                return 0
            print("csip: error: a worker failed to start (see above)", file=sys.stderr)
            return 1
        pids = ", ".join(str(w.process.pid) for w in supervisor.workers.values())
        print(
            banner.format(**urls(settled), sep2_port=settled.sep2_port)
            + f"\n{settled.workers} workers share each port (pids {pids}).",
            flush=True,
        )
        supervisor.supervise()
        return 0
    finally:
        supervisor.stop()
        for sock in holders.values():
            sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)
