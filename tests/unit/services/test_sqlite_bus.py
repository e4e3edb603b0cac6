"""A running SQLite server hears of writes other processes (the CLI) commit to its file:
its caches must not outlive `csip programs enroll` run beside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from csip.app import build
from csip.config import Settings
from csip.services.bus import SqliteBus

from support import Pki


async def test_a_write_by_another_process_reaches_the_servers_listeners(
    tmp_path: Path, pki: Pki
) -> None:
    settings = Settings(data_dir=tmp_path, certs_dir=pki.directory, sep2_port=18443).validate()
    server, cli = build(settings), build(settings)
    await server.store.migrate()
    assert isinstance(server.bus, SqliteBus)
    server.bus.poll_interval = 0.05
    heard: list[list[str]] = []
    server.bus.subscribe(heard.append)
    await server.bus.start()
    try:
        group = await server.programs.create_group("mine", None, None)
        assert len(heard) == 1  # its own write, applied at commit
        arrived = asyncio.Event()
        server.bus.subscribe(lambda tags: arrived.set())
        program = await cli.programs.create_program(group.id, "from the cli", 5)
        async with asyncio.timeout(5):
            await arrived.wait()
        assert f"program:{program.id}" in heard[1]
        await asyncio.sleep(0.2)  # a few more polls: its own row is never applied twice
        assert len(heard) == 2 and server.bus.replayed == 1
    finally:
        await server.bus.stop()
        await server.store.close()
        await cli.store.close()
