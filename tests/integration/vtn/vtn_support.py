"""Test helpers for the VTN: an HTTP client that checks every answer against the patched
3.1.0 spec, a webhook receiver that passes the echo check, an MQTT listener."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from vtn_spec import BASE_PATH, response_errors


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


@dataclass
class VtnClient:
    """One OAuth2 client (BL or VEN) talking to the VTN over real HTTP(S)."""

    base: str
    session: aiohttp.ClientSession
    token: str = ""
    client_id: str = ""
    checked: list[tuple[str, str, int]] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent_headers = dict(headers or {})
        bearer = self.token if token is None else token
        if bearer:
            sent_headers.setdefault("Authorization", f"Bearer {bearer}")
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base + path, data=data, params=params, headers=sent_headers
        ) as response:
            content = await response.read()
            answer = Answer(
                response.status, json.loads(content) if content else None, response.headers
            )
            content_type = response.headers.get("Content-Type", "").split(";")[0]
        query: dict[str, Any] = {}
        if isinstance(params, list):  # repeated parameters: targets=a&targets=b
            for key, value in params:
                query.setdefault(key, []).append(value)
        elif params:
            query = dict(params)
        errors = response_errors(
            method, BASE_PATH + path, answer.status, content, content_type, query
        )
        assert not errors, (
            f"{method} {path} -> {answer.status} breaks the spec: {errors}\n{content!r}"
        )
        self.checked.append((method, path, answer.status))
        return answer

    async def get(self, path: str, params: Any = None) -> Answer:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any) -> Answer:
        return await self.call("POST", path, body)

    async def put(self, path: str, body: Any) -> Answer:
        return await self.call("PUT", path, body)

    async def delete(self, path: str) -> Answer:
        return await self.call("DELETE", path)


class WebhookReceiver:
    """A subscriber's callback endpoint on loopback: echoes the check, records notifications."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.echo_checks = 0
        self.refused = 0
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.arrived = asyncio.Condition()

    async def handle_get(self, request: web.Request) -> web.Response:
        self.echo_checks += 1
        return web.Response(text=request.query.get("echo", ""))

    async def handle_post(self, request: web.Request) -> web.Response:
        if self.status != 200:
            self.refused += 1
            return web.Response(status=self.status)
        self.notifications.append(await request.json())
        self.authorizations.append(request.headers.get("Authorization", ""))
        async with self.arrived:
            self.arrived.notify_all()
        return web.Response(status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle_get)
        app.router.add_post("/{tail:.*}", self.handle_post)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait_for(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.notifications) >= count)
        return self.notifications

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class MqttListener:
    """Subscribes to topics on the real broker and records (topic, payload)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._topics: list[str] = []
        self.arrived = asyncio.Condition()

    async def start(self, topics: list[str]) -> None:
        self._topics = topics
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def _run(self) -> None:
        import aiomqtt

        async with aiomqtt.Client(
            self.host, self.port, identifier=f"test-{uuid.uuid4().hex[:8]}"
        ) as client:
            for topic in self._topics:
                await client.subscribe(topic, qos=1)
            self._ready.set()
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                self.messages.append((str(message.topic), json.loads(payload)))
                async with self.arrived:
                    self.arrived.notify_all()

    async def wait_for(self, count: int, within: float = 10.0) -> list[tuple[str, Any]]:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.messages) >= count)
        return self.messages

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
