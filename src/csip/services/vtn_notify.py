"""Notification plumbing of the VTN: the webhook echo check and the MQTT sender.

The echo check (CLARIFICATIONS "Webhook echo check"): before accepting a subscription, csip
sends ``GET <callbackUrl>?echo=<random>`` and wants 200 with exactly that value back. Unsafe
callbacks are refused first: plain http, and hosts that resolve to loopback, private,
link-local or otherwise internal addresses (the VTN must not become a way into the utility's
own network); ``vtn_webhook_allow_loopback`` admits http on loopback for labs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from csip.errors import BadRequest
from csip.logsafe import Summary
from csip.store.outbox import OutboxMessage

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(BadRequest):
    """The subscription's callbackUrl is unsafe or failed the echo check."""


def address_allowed(address: IPAddress, allow_loopback: bool) -> bool:
    """Public addresses always; loopback only in lab mode; private, link-local, multicast,
    reserved and unspecified ones never (they reach into the utility's own network)."""
    if address.is_loopback:
        return allow_loopback
    return not (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class SafeResolver(AbstractResolver):
    """Resolves callback hosts for delivery and drops internal addresses, so a callback
    host that passed the echo check cannot later be re-pointed inside (DNS rebinding)."""

    def __init__(self, allow_loopback: bool = False) -> None:
        self.allow_loopback = allow_loopback
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        usable = [
            r
            for r in found
            if address_allowed(ipaddress.ip_address(r["host"].split("%")[0]), self.allow_loopback)
        ]
        if not usable:
            raise OSError(f"{host} resolves only to internal addresses")
        return usable

    async def close(self) -> None:
        await self._inner.close()

    def check_literal(self, url: str) -> None:
        """aiohttp skips the resolver for IP literals: check those here."""
        host = urlsplit(url).hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: the resolver checks it
        if not address_allowed(address, self.allow_loopback):
            raise OSError(f"{host} is an internal address")


class CallbackChecker:
    def __init__(self, allow_loopback: bool = False, timeout: float = 10.0) -> None:
        self.allow_loopback = allow_loopback
        self.timeout = timeout

    async def _safe_address(self, host: str, port: int) -> bool:
        """Every address the host resolves to must be public (or loopback in lab mode)."""
        loopback_only = True
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError as exc:
            raise CallbackRefused(f"callbackUrl host {host!r} does not resolve") from exc
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address.is_loopback:
                continue
            loopback_only = False
            if not address_allowed(address, self.allow_loopback):
                raise CallbackRefused(f"callbackUrl host {host!r} is an internal address")
        if loopback_only and not self.allow_loopback:
            raise CallbackRefused(f"callbackUrl host {host!r} is a loopback address")
        return loopback_only

    async def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefused("callbackUrl must be an https:// URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise CallbackRefused("callbackUrl has an invalid port") from exc
        loopback = await self._safe_address(parts.hostname, port)
        if parts.scheme == "http" and not (loopback and self.allow_loopback):
            raise CallbackRefused("callbackUrl must be https (http only on loopback in labs)")
        echo = secrets.token_urlsafe(16)
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("echo", echo)])
        probe = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(probe, allow_redirects=False) as response,
            ):
                text = (await response.content.read(4096)).decode("utf-8", "replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CallbackRefused(f"callbackUrl did not answer the echo check: {exc}") from exc
        if status != 200 or not _echoed(text, echo):
            raise CallbackRefused(
                f"callbackUrl failed the echo check (HTTP {status}; the body must be the echo "
                "value, as plain text or a JSON string)"
            )


def _echoed(text: str, echo: str) -> bool:
    if text.strip() == echo:
        return True
    try:
        return bool(json.loads(text) == echo)
    except ValueError:
        return False


class MqttSender:
    """Publishes outbox rows of kind "mqtt" to one broker over a kept-open connection.

    The outbox hands over a whole batch at once (one publish per VEN per event); at most
    `max_inflight` QoS 1 publishes wait for their PUBACK at a time, the rest queue here.
    aiomqtt warns on every publish past its own threshold of 10 pending calls; that
    threshold is raised to our bound, and a backlog is reported as one summary line at most
    once a minute, with a count.
    """

    def __init__(self, url: str, max_inflight: int = 100) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"vtn_mqtt_url must look like mqtt://host:1883, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 1883
        self.username = parts.username
        self.password = parts.password
        self.max_inflight = max_inflight
        self._client: object | None = None
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max_inflight)
        self.backlog = Summary(
            log, logging.INFO, f"MQTT publishes waited for one of {max_inflight} in flight", 60
        )

    async def _connected(self) -> object:
        import aiomqtt

        async with self._lock:
            if self._client is None:
                client = aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self.username,
                    password=self.password,
                    identifier=f"csip-vtn-{secrets.token_hex(4)}",
                    max_inflight_messages=self.max_inflight,
                )
                # our semaphore bounds what is pending; aiomqtt's warning would fire per
                # publish past 10 (its default), so it only speaks if that bound breaks
                client.pending_calls_threshold = self.max_inflight
                await client.__aenter__()
                self._client = client
            return self._client

    async def __call__(self, message: OutboxMessage) -> None:
        import aiomqtt

        if self._slots.locked():
            self.backlog.note()
        async with self._slots:
            client = await self._connected()
            assert isinstance(client, aiomqtt.Client)
            try:
                await client.publish(message.target, message.body, qos=1)
            except aiomqtt.MqttError:
                await self.close()
                raise

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)  # type: ignore[attr-defined]
            except Exception:  # already broken: nothing more to release
                log.debug("closing the MQTT client failed", exc_info=True)
