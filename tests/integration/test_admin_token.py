"""Issue 9 item 15: the admin token is stored hashed, any presented token (non-ASCII,
undecodable bytes) is a plain 401, and `csip admin token` still prints a usable token."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from csip.services.admin import LEGACY_TOKEN_KEY, TOKEN_HASH_KEY, admin_token, token_file
from csip.store import Store

from support import ServerFactory

CSIP = [sys.executable, "-m", "csip.cli"]


async def raw_get(port: int, path: str, authorization: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: " + authorization + b"\r\n\r\n"
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer jeton-\u00e9t\u00e9".encode(),
        "Bearer \u4ee4\u724c".encode(),
        b"Bearer \xff\xfe\x80",
        "Bearer \u00e9".encode("latin-1"),
    ],
)
async def test_a_non_ascii_token_is_401_not_500(
    make_server: ServerFactory, authorization: bytes
) -> None:
    srv = await make_server()
    for path in ("/api/status", "/api/end-devices", "/api/groups"):
        status, body = await raw_get(srv.server.admin_port, path, authorization)
        assert status == 401, (path, body)
        assert b'"status": 401' in body
    status, _ = await raw_get(srv.server.admin_port, "/api/status", b"Bearer " + b"x" * 5000)
    assert status == 401
    status, _ = await raw_get(
        srv.server.admin_port, "/api/status", f"Bearer {srv.admin_token}".encode()
    )
    assert status == 200


async def test_the_database_holds_only_the_hash(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}")
    await store.migrate()
    try:
        token = await admin_token(store, data_dir=tmp_path)
        assert await store.get_setting(TOKEN_HASH_KEY) == hashlib.sha256(token.encode()).hexdigest()
        assert not await store.get_setting(LEGACY_TOKEN_KEY)
        assert token.encode() not in (tmp_path / "csip.db").read_bytes()
        path = token_file(tmp_path)
        assert path.read_text().strip() == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await admin_token(store, data_dir=tmp_path) == token  # printed again
        path.unlink()
        with pytest.raises(Exception, match="--rotate"):
            await admin_token(store, data_dir=tmp_path)
        rotated = await admin_token(store, data_dir=tmp_path, rotate=True)
        assert rotated != token and path.read_text().strip() == rotated
    finally:
        await store.close()


async def test_a_plain_token_from_an_older_database_is_kept_and_hashed(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}")
    await store.migrate()
    try:
        await store.set_settings({LEGACY_TOKEN_KEY: "old-plain-token"})
        assert await admin_token(store, data_dir=tmp_path) == "old-plain-token"
        assert not await store.get_setting(LEGACY_TOKEN_KEY)
        assert await admin_token(store, data_dir=tmp_path) == "old-plain-token"
    finally:
        await store.close()


def test_cli_prints_the_same_token_and_rotates(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CSIP, "admin", "token", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert len(token) >= 32
    assert run().stdout.strip() == token
    (tmp_path / "admin-token").unlink()
    lost = run()
    assert lost.returncode == 1 and "--rotate" in lost.stderr
    rotated = run("--rotate")
    assert rotated.returncode == 0 and rotated.stdout.strip() not in ("", token)
    assert run().stdout.strip() == rotated.stdout.strip()
