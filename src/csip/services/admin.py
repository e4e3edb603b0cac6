"""What the utility (and a test lab, unattended) does through the admin API and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from csip.config import DEFAULT_POLL_RATES
from csip.domain.changes import (
    AggregatorRemoved,
    CertificateChanged,
    EndDeviceChanged,
    EndDeviceListed,
    EverythingChanged,
    NotificationHostsChanged,
    SettingsChanged,
)
from csip.domain.devices import Aggregator, ClientCertificate, EndDevice
from csip.errors import ConfigError, Conflict, InvalidValues, NotFound
from csip.pki.identity import normalize_lfdi, pin_is_valid, sfdi_from_lfdi
from csip.services.sep2 import Sep2Service, device_ref
from csip.store import Store
from csip.store import store as db
from csip.store.uow import UnitOfWork

#: Where earlier versions kept the token itself; read once, then replaced by its hash.
LEGACY_TOKEN_KEY = "admin_token"  # noqa: S105 - the settings key, not a secret
#: The database keeps only the SHA-256 of the admin token (256 random bits: no salt or slow
#: hash needed); whoever reads the database or a backup cannot use the API with it.
TOKEN_HASH_KEY = "admin_token_sha256"  # noqa: S105 - the settings key, not a secret
#: The token itself lives only in this file of the data dir (mode 0600), written when it is
#: minted, so that `csip admin token` can print it again on this host.
TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a presented token; any text, even non-ASCII or undecodable bytes."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def token_file(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def _write_token_file(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


async def admin_token(store: Store, *, rotate: bool = False, data_dir: Path | None = None) -> str:
    """The admin bearer token: minted on first use (or on `rotate`, which invalidates the old
    one), its hash stored in the database and the token written to `data_dir`/admin-token.

    Afterwards the token can be printed again only from that file (the database cannot give
    it back): without the file, or with a file that no longer matches (rotated on another
    host), this raises ConfigError naming `--rotate` as the fix.

    Not a unit of work with a change: no worker caches the admin token (AdminService
    .token_matches reads the stored hash on each admin request), so a rotation is seen by
    every worker at its next request, and 2030.5 / OpenADR clients never see it.
    """
    expected = await store.get_setting(TOKEN_HASH_KEY)
    stored_legacy = await store.get_setting(LEGACY_TOKEN_KEY)
    legacy: str | None = str(stored_legacy) if stored_legacy else None
    if legacy:  # a database from before hashing: keep its token, forget the plain copy
        if expected is None:
            expected = token_hash(legacy)
        await store.set_settings({TOKEN_HASH_KEY: expected, LEGACY_TOKEN_KEY: ""})
    if expected is not None and not rotate:
        path = token_file(data_dir) if data_dir is not None else None
        saved = _read_token_file(path) if path is not None else None
        if saved is not None and hmac.compare_digest(token_hash(saved), str(expected)):
            return saved
        if legacy and hmac.compare_digest(token_hash(legacy), str(expected)):
            if path is not None:
                _write_token_file(path, legacy)
            return legacy
        where = f"{path} is missing or out of date" if path is not None else "no data dir given"
        raise ConfigError(
            "the admin token is stored hashed and cannot be shown again "
            f"({where}): run `csip admin token --rotate` to mint a new one"
        )
    token = secrets.token_urlsafe(32)
    if data_dir is not None:
        _write_token_file(token_file(data_dir), token)
    await store.set_settings({TOKEN_HASH_KEY: token_hash(token)})
    return token


@dataclass(frozen=True)
class PreRegistration:
    lfdi: str
    sfdi: int | None = None
    pin: int | None = None
    aggregator: str | None = None
    post_rate: int | None = None
    enabled: bool | None = None


class AdminService:
    def __init__(self, sep2: Sep2Service) -> None:
        self.sep2 = sep2
        self.store: Store = sep2.store
        self.settings = sep2.settings
        self.clock = sep2.clock
        self.changes = sep2.changes

    async def token_matches(self, presented: str) -> bool:
        """Compare hashes (constant time, ASCII hex): any presented text is just a mismatch."""
        expected = await self.store.get_setting(TOKEN_HASH_KEY)
        if expected is None:
            legacy = await self.store.get_setting(LEGACY_TOKEN_KEY)
            expected = token_hash(str(legacy)) if legacy else None
        return expected is not None and hmac.compare_digest(str(expected), token_hash(presented))

    # ---- aggregators ----------------------------------------------------------
    async def aggregator(self, name: str) -> Aggregator:
        found = await self.store.get_aggregator(name)
        if found is None:
            raise NotFound(f"no aggregator named {name!r}")
        return found

    async def create_aggregator(self, name: str) -> Aggregator:
        """Not a unit of work with a change: a new aggregator has no certificate yet, so no
        client's principal, EndDeviceList or cached identity (`cert:` tags) can change until
        one is attached, and attaching is a unit of work that records CertificateChanged."""
        return await self.store.create_aggregator(name, self.clock.now_int())

    async def aggregators(self) -> list[Aggregator]:
        return await self.store.list_aggregators()

    async def aggregator_names(self) -> dict[int, str]:
        return {a.id: a.name for a in await self.store.list_aggregators()}

    async def notification_hosts(self, name: str) -> dict[str, Any]:
        """The aggregator's notification host allow-list (empty: the global rules apply)."""
        from csip.services.subscriptions import ALLOW_LIST_PREFIX

        aggregator = await self.aggregator(name)
        stored = await self.store.get_setting(f"{ALLOW_LIST_PREFIX}{aggregator.id}")
        if not stored:
            return {"hosts": [], "allow_http": False}
        return {"hosts": list(stored["hosts"]), "allow_http": bool(stored.get("allow_http"))}

    async def set_notification_hosts(
        self, name: str, hosts: Sequence[str], allow_http: bool
    ) -> dict[str, Any]:
        """Replace the aggregator's allow-list; an empty list removes it. Applies to the
        subscriptions created from now on, and to every delivery from the next on."""
        from csip.domain.subscriptions import check_allow_list_entry
        from csip.services.subscriptions import ALLOW_LIST_PREFIX

        aggregator = await self.aggregator(name)
        entries = sorted({check_allow_list_entry(h) for h in hosts})
        value = {"hosts": entries, "allow_http": allow_http} if entries else None
        async with self.changes.unit_of_work() as tx:
            await db.update_settings(tx.session, {f"{ALLOW_LIST_PREFIX}{aggregator.id}": value})
            tx.record(NotificationHostsChanged(aggregator.id))
        return {"hosts": entries, "allow_http": bool(entries) and allow_http}

    async def delete_aggregator(self, name: str) -> None:
        async with self.changes.unit_of_work() as tx:
            found = await db.select_aggregator(tx.session, name)
            if found is None:
                return
            certs = await db.select_certificates(tx.session, found.id)
            await db.delete_aggregator(tx.session, found.id)
            tx.record(*(CertificateChanged(c.lfdi) for c in certs), AggregatorRemoved(found.id))

    async def attach_certificate(
        self, name: str, lfdi: str, expires_at: int | None
    ) -> ClientCertificate:
        aggregator = await self.aggregator(name)
        lfdi = normalize_lfdi(lfdi)
        async with self.changes.unit_of_work() as tx:
            existing = await db.select_certificate(tx.session, lfdi)
            if existing and existing.aggregator_id not in (None, aggregator.id):
                raise Conflict(f"certificate {lfdi} is attached to another aggregator")
            cert = ClientCertificate(
                lfdi, aggregator.id, existing.enabled if existing else True, expires_at
            )
            await db.update_certificate(tx.session, cert)
            tx.record(CertificateChanged(lfdi))
        return cert

    async def detach_certificate(self, name: str, lfdi: str) -> None:
        aggregator = await self.aggregator(name)
        lfdi = normalize_lfdi(lfdi)
        async with self.changes.unit_of_work() as tx:
            existing = await db.select_certificate(tx.session, lfdi)
            if existing is None or existing.aggregator_id != aggregator.id:
                return
            if existing.enabled:
                await db.delete_certificate(tx.session, lfdi)
            else:  # keep the deny-list entry
                await db.update_certificate(tx.session, replace(existing, aggregator_id=None))
            tx.record(CertificateChanged(lfdi))

    async def certificates(self, name: str | None = None) -> list[ClientCertificate]:
        aggregator_id = (await self.aggregator(name)).id if name else None
        return await self.store.list_certificates(aggregator_id)

    async def set_certificate_enabled(self, lfdi: str, enabled: bool) -> ClientCertificate:
        """Deny-list (or restore) a certificate: 403 from its next request, in every worker."""
        lfdi = normalize_lfdi(lfdi)
        async with self.changes.unit_of_work() as tx:
            existing = await db.select_certificate(tx.session, lfdi)
            cert = (
                replace(existing, enabled=enabled)
                if existing
                else ClientCertificate(lfdi, None, enabled)
            )
            if cert.enabled and cert.aggregator_id is None and cert.expires_at is None:
                await db.delete_certificate(tx.session, lfdi)
            else:
                await db.update_certificate(tx.session, cert)
            tx.record(CertificateChanged(lfdi))
        return cert

    # ---- end devices -----------------------------------------------------------
    async def end_devices(
        self, offset: int, limit: int, aggregator: str | None
    ) -> tuple[int, list[EndDevice]]:
        aggregator_id = (await self.aggregator(aggregator)).id if aggregator else None
        return await self.store.page_end_devices(
            aggregator_id=aggregator_id, start=offset, limit=limit
        )

    async def end_device(self, lfdi: str) -> EndDevice:
        found = await self.store.get_end_device_by_lfdi(normalize_lfdi(lfdi))
        if found is None:
            raise NotFound(f"no EndDevice with lFDI {lfdi}")
        return found

    async def _check(self, item: PreRegistration) -> tuple[str, int, int | None]:
        lfdi = normalize_lfdi(item.lfdi)
        sfdi = sfdi_from_lfdi(lfdi)
        if item.sfdi is not None and item.sfdi != sfdi:
            raise InvalidValues(f"sfdi {item.sfdi} does not belong to lfdi {lfdi} ({sfdi})")
        if item.pin is not None and not pin_is_valid(item.pin):
            raise InvalidValues(f"pin {item.pin} is not 6 digits with a valid check digit")
        aggregator_id = (await self.aggregator(item.aggregator)).id if item.aggregator else None
        return lfdi, sfdi, aggregator_id

    async def preregister(self, items: Sequence[PreRegistration]) -> list[tuple[EndDevice, bool]]:
        """Out-of-band registration, idempotent per LFDI: (device, created) for each item.

        New devices are inserted in one transaction; a bad item rejects the whole batch.
        """
        self.check_out_of_band()
        checked = [(item, *await self._check(item)) for item in items]
        if len({lfdi for _, lfdi, _, _ in checked}) != len(checked):
            raise InvalidValues("the same lfdi appears twice in one request")
        async with self.changes.unit_of_work() as tx:
            return await self.preregister_in(tx, checked)

    def check_out_of_band(self) -> None:
        if not self.settings.registration_out_of_band:
            raise Conflict("out-of-band registration is disabled in this server's config")

    async def check_item(self, item: PreRegistration) -> tuple[str, int, int | None]:
        """(lfdi, sfdi, aggregator id) of an item, or InvalidValues/NotFound saying why not."""
        return await self._check(item)

    async def preregister_in(
        self,
        tx: UnitOfWork,
        checked: Sequence[tuple[PreRegistration, str, int, int | None]],
    ) -> list[tuple[EndDevice, bool]]:
        """`preregister` inside a caller's unit of work (items checked, LFDIs distinct):
        `csip devices import` adds group memberships to the same transaction."""
        now = self.clock.now_int()
        results: list[tuple[EndDevice, bool]] = []
        new: list[EndDevice] = []
        found = await db.select_end_devices_by_lfdi(tx.session, [c[1] for c in checked])
        for item, lfdi, sfdi, aggregator_id in checked:
            existing = found.get(lfdi)
            if existing is None:
                new.append(
                    EndDevice(
                        id=0,
                        lfdi=lfdi,
                        sfdi=sfdi,
                        changed_time=now,
                        registered_at=now,
                        pin=item.pin if item.pin is not None else self.settings.default_pin,
                        enabled=True if item.enabled is None else item.enabled,
                        post_rate=item.post_rate,
                        aggregator_id=aggregator_id,
                    )
                )
                continue
            changes: dict[str, Any] = {"aggregator_id": aggregator_id}
            for name in ("pin", "post_rate", "enabled"):
                if getattr(item, name) is not None:
                    changes[name] = getattr(item, name)
            updated = await db.update_end_device(tx.session, existing.id, **changes)
            tx.record(EndDeviceChanged(device_ref(existing)))
            tx.record(EndDeviceChanged(device_ref(updated)))
            results.append((updated, False))
        created = await db.insert_end_devices(tx.session, new) if new else []
        for device in created:
            tx.record(EndDeviceChanged(device_ref(device)), EndDeviceListed(device_ref(device)))
        return results + [(device, True) for device in created]

    async def delete_end_device(self, lfdi: str) -> bool:
        """Remove a device and everything under it so it can register again; idempotent."""
        found = await self.store.get_end_device_by_lfdi(normalize_lfdi(lfdi))
        if found is None:
            return False
        await self.sep2.remove_device(found)
        return True

    # ---- rates -------------------------------------------------------------------
    async def rates(self) -> dict[str, Any]:
        return {
            "poll_rates": await self.sep2.poll_rates(),
            "post_rate": await self.sep2.default_post_rate(),
        }

    async def set_rates(
        self, poll_rates: dict[str, int] | None, post_rate: int | None, clear_post_rate: bool
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in (poll_rates or {}).items():
            if name not in DEFAULT_POLL_RATES:
                known = ", ".join(DEFAULT_POLL_RATES)
                raise InvalidValues(f"unknown poll rate {name!r}; known: {known}")
            if not 0 < value <= 0xFFFFFFFF:
                raise InvalidValues(f"poll rate {name} must be 1..4294967295 seconds")
            values[f"poll_rate.{name}"] = value
        if post_rate is not None:
            if not 0 < post_rate <= 0xFFFFFFFF:
                raise InvalidValues("post_rate must be 1..4294967295 seconds")
            values["post_rate"] = post_rate
        elif clear_post_rate:
            values["post_rate"] = None
        if values:
            async with self.changes.unit_of_work() as tx:
                await db.update_settings(tx.session, values)
                tx.record(SettingsChanged())
        return await self.rates()

    # ---- lab support -------------------------------------------------------------
    async def reset(self) -> int:
        """Remove every EndDevice (and, as later issues add them, programs and controls)."""
        async with self.changes.unit_of_work() as tx:
            removed = await db.delete_all_end_devices(tx.session)
            tx.record(EverythingChanged())
        return removed
