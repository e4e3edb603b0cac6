"""csip.app.build is the one place that wires: each service is made once and handed to every
face that uses it, and what used to be set on services afterwards is given at construction."""

from __future__ import annotations

from pathlib import Path

from csip.app import build
from csip.config import Settings
from csip.domain.clock import Clock
from csip.web.admin_app import DER_DEVICE, TELEMETRY
from csip.web.admin_programs import PROGRAM_ADMIN
from csip.web.lab import WORKER_HEADER
from csip.web.sep2_der import DER_SERVICE
from csip.web.sep2_programs import PROGRAMS, SUBSCRIPTIONS
from csip.web.sep2_telemetry import TELEMETRY as SEP2_TELEMETRY
from csip.web.vtn_app import VTN_AUTH

from support import Pki


def settings(tmp_path: Path, pki: Pki, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, certs_dir=pki.directory, sep2_port=18443, **extra).validate()  # type: ignore[arg-type]


async def test_one_service_of_each_kind_shared_by_the_faces(tmp_path: Path, pki: Pki) -> None:
    clock = Clock()
    app = build(settings(tmp_path, pki), clock)
    try:
        assert app.clock is clock and app.sep2.clock is clock and app.vtn_auth.clock is clock
        assert app.sep2_app[PROGRAMS] is app.programs is app.admin_app[PROGRAM_ADMIN]
        assert app.sep2_app[SUBSCRIPTIONS] is app.subscriptions
        assert app.sep2_app[DER_SERVICE] is app.der_device is app.admin_app[DER_DEVICE]
        assert app.sep2_app[SEP2_TELEMETRY] is app.telemetry is app.admin_app[TELEMETRY]
        assert app.admin_app[VTN_AUTH] is app.vtn_auth
        # given at construction, not patched in later
        assert app.sep2.changes is app.changes is app.vtn.changes  # one Changes per app
        assert app.changes.wake == app.outbox.wake and app.changes.mqtt_prefix is None
        assert app.sep2.mup_count is not None and app.sep2.farewells is not None
        assert app.subscriptions.public_base == "https://localhost:18443"
        assert set(app.outbox.senders) == {"sep2", "webhook"}
        assert app.redirect_app is None
        assert not app.sep2_app.on_response_prepare  # no lab header unless asked for
    finally:
        await app.store.close()


async def test_public_url_and_lab_options(tmp_path: Path, pki: Pki) -> None:
    app = build(
        settings(
            tmp_path,
            pki,
            sep2_public_url="https://csip.example.com/",
            http_redirect_port=18080,
            lab_worker_header=True,
        )
    )
    try:
        assert app.subscriptions.public_base == "https://csip.example.com"
        assert app.redirect_app is not None
        for face in (app.sep2_app, app.admin_app, app.vtn_app):
            assert len(face.on_response_prepare) == 1, WORKER_HEADER
    finally:
        await app.store.close()
