"""The admin adapter: how the harness puts a server into the state a procedure step needs.

The harness never reaches into a server: it drives 2030.5 over the network and, between
steps, asks an `AdminAdapter` to change server state. `CsipAdmin` is the one for csip's
JSON admin API. Another server is supported by writing a class with these methods (and
passing it to `servermode.run` / registering it in `adapter_from_spec`):

    preregister(lfdi, sfdi, pin=None, aggregator=None)   EndDevice known out of band
    remove_device(lfdi)                                  delete it with all under it
    create_aggregator(name) / attach_certificate(name, lfdi)
    aggregator_devices(name) -> [lfdi]           the EndDevices an aggregator manages
    create_group(description, parent=None) -> {"id", "href"}   a FunctionSetAssignments
    add_member(group_id, lfdi) / remove_member(group_id, lfdi)
    create_program(group_id, description, primacy) -> {"id", "href", "mrid"}
    update_program(program_id, primacy)
    create_control(program_id, spec) -> {"id", "href", "mrid"}   spec: start (epoch), duration,
        base (DERControlBase modes), randomize_start, randomize_duration, response_required
    cancel_control(control_id) / cancel_device(lfdi)
    set_default(program_id, base, settings)      create or replace DefaultDERControl
    create_curve(program_id, spec) -> {"id", "href"}
    set_post_rate(lfdi, seconds) / set_poll_rates({resource: seconds}) / poll_rates()
    now() -> server epoch seconds; move_clock(seconds); reset_clock()

Every method raises `AdminError` when the server refuses; methods a server cannot do may
raise `NotImplementedError`, which marks the procedures needing them not applicable.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp


class AdminError(RuntimeError):
    """The server's admin interface refused a step."""


class AdminAdapter(Protocol):
    async def preregister(
        self, lfdi: str, sfdi: int, pin: int | None = None, aggregator: str | None = None
    ) -> None: ...
    async def remove_device(self, lfdi: str) -> None: ...
    async def create_aggregator(self, name: str) -> None: ...
    async def attach_certificate(self, name: str, lfdi: str) -> None: ...
    async def aggregator_devices(self, name: str) -> list[str]: ...
    async def create_group(self, description: str, parent: int | None = None) -> dict[str, Any]: ...
    async def add_member(self, group_id: int, lfdi: str) -> None: ...
    async def remove_member(self, group_id: int, lfdi: str) -> None: ...
    async def create_program(
        self, group_id: int, description: str, primacy: int
    ) -> dict[str, Any]: ...
    async def update_program(self, program_id: int, primacy: int) -> None: ...
    async def create_control(self, program_id: int, spec: dict[str, Any]) -> dict[str, Any]: ...
    async def cancel_control(self, control_id: int, randomized: bool = False) -> None: ...
    async def cancel_device(self, lfdi: str) -> None: ...
    async def set_default(
        self, program_id: int, base: dict[str, Any], settings: dict[str, int]
    ) -> None: ...
    async def create_curve(self, program_id: int, spec: dict[str, Any]) -> dict[str, Any]: ...
    async def set_post_rate(self, lfdi: str, seconds: int | None) -> None: ...
    async def set_poll_rates(self, rates: dict[str, int]) -> None: ...
    async def poll_rates(self) -> dict[str, int]: ...
    async def now(self) -> float: ...
    async def move_clock(self, seconds: float) -> None: ...
    async def reset_clock(self) -> None: ...
    async def close(self) -> None: ...


class CsipAdmin:
    """csip's admin API (JSON over HTTP on loopback, bearer token)."""

    def __init__(self, base: str, token: str, timeout: float = 30.0) -> None:
        self.base = base.rstrip("/")
        if not self.base.endswith("/api"):
            self.base += "/api"
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, headers={"Authorization": f"Bearer {self.token}"}
            )
        return self._session

    async def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        async with self.session().request(method, self.base + path, json=body) as response:
            data = await response.json() if response.content_type == "application/json" else None
            if response.status >= 300 and response.status not in ok:
                raise AdminError(f"{method} {path} -> {response.status}: {data}")
            return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def preregister(
        self, lfdi: str, sfdi: int, pin: int | None = None, aggregator: str | None = None
    ) -> None:
        body: dict[str, Any] = {"sfdi": sfdi}
        if pin is not None:
            body["pin"] = pin
        if aggregator is not None:
            body["aggregator"] = aggregator
        await self.call("PUT", f"/end-devices/{lfdi}", body)

    async def remove_device(self, lfdi: str) -> None:
        await self.call("DELETE", f"/end-devices/{lfdi}", ok=(404,))

    async def create_aggregator(self, name: str) -> None:
        await self.call("POST", "/aggregators", {"name": name}, ok=(409,))

    async def attach_certificate(self, name: str, lfdi: str) -> None:
        await self.call("PUT", f"/aggregators/{name}/certificates/{lfdi}", {})

    async def aggregator_devices(self, name: str) -> list[str]:
        data = await self.call("GET", f"/end-devices?aggregator={name}&limit=1000")
        return [str(item["lfdi"]).upper() for item in data.get("items", [])]

    async def create_group(self, description: str, parent: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"description": description[:32]}
        if parent is not None:
            body["parent"] = parent
        return dict(await self.call("POST", "/groups", body))

    async def add_member(self, group_id: int, lfdi: str) -> None:
        await self.call("PUT", f"/groups/{group_id}/members/{lfdi}")

    async def remove_member(self, group_id: int, lfdi: str) -> None:
        await self.call("DELETE", f"/groups/{group_id}/members/{lfdi}", ok=(404,))

    async def create_program(self, group_id: int, description: str, primacy: int) -> dict[str, Any]:
        body = {"description": description[:32], "primacy": primacy}
        return dict(await self.call("POST", f"/groups/{group_id}/programs", body))

    async def update_program(self, program_id: int, primacy: int) -> None:
        await self.call("PUT", f"/programs/{program_id}", {"primacy": primacy})

    async def create_control(self, program_id: int, spec: dict[str, Any]) -> dict[str, Any]:
        (created,) = await self.call(
            "POST", f"/programs/{program_id}/controls", {"controls": [spec]}
        )
        return dict(created)

    async def cancel_control(self, control_id: int, randomized: bool = False) -> None:
        await self.call("POST", f"/controls/{control_id}/cancel", {"randomized": randomized})

    async def cancel_device(self, lfdi: str) -> None:
        await self.call("POST", f"/end-devices/{lfdi}/cancel", {})

    async def set_default(
        self, program_id: int, base: dict[str, Any], settings: dict[str, int]
    ) -> None:
        body = {"base": base, "settings": settings}
        await self.call("PUT", f"/programs/{program_id}/default-control", body)

    async def create_curve(self, program_id: int, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.call("POST", f"/programs/{program_id}/curves", spec))

    async def set_post_rate(self, lfdi: str, seconds: int | None) -> None:
        await self.call("PUT", f"/end-devices/{lfdi}/post-rate", {"post_rate": seconds})

    async def set_poll_rates(self, rates: dict[str, int]) -> None:
        await self.call("PUT", "/rates", {"poll_rates": rates})

    async def poll_rates(self) -> dict[str, int]:
        data = await self.call("GET", "/rates")
        return {str(k): int(v) for k, v in (data.get("poll_rates") or {}).items()}

    async def now(self) -> float:
        return float((await self.call("GET", "/clock"))["now"])

    async def move_clock(self, seconds: float) -> None:
        await self.call("PUT", "/clock", {"advance": seconds})

    async def reset_clock(self) -> None:
        await self.call("PUT", "/clock", {"reset": True})


def adapter_from_spec(spec: str) -> AdminAdapter:
    """`csip:URL:TOKEN` (URL of the admin listener, e.g. http://127.0.0.1:8444)."""
    kind, _, rest = spec.partition(":")
    if kind != "csip":
        raise ValueError(f"unknown admin adapter {kind!r} (known: csip:URL:TOKEN)")
    url, _, token = rest.rpartition(":")
    if not url.startswith(("http://", "https://")) or not token:
        raise ValueError("the csip admin adapter is csip:http://HOST:PORT:TOKEN")
    return CsipAdmin(url, token)
