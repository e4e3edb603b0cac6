"""Persistence: the only package that imports sqlmodel/sqlalchemy. Returns domain objects."""

from csip.store import (  # noqa: F401 - every table on SQLModel.metadata
    tables_changes,
    tables_der,
    tables_dispatch,
    tables_engine,
    tables_engine_reports,
    tables_fleet,
    tables_messaging,
    tables_operators,
)
from csip.store.der_device import DerDeviceStore  # DER documents, LogEvents (issue 3)
from csip.store.store import Store
from csip.store.telemetry import TelemetryStore  # metering mirror (issue 3, telemetry)

__all__ = ["DerDeviceStore", "Store", "TelemetryStore"]
