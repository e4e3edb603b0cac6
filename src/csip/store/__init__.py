"""Persistence: the only package that imports sqlmodel/sqlalchemy. Returns domain objects."""

from csip.store import tables_changes, tables_der, tables_fleet  # noqa: F401 - every table
from csip.store.der_device import DerDeviceStore  # DER documents, LogEvents (issue 3)
from csip.store.store import Store
from csip.store.telemetry import TelemetryStore  # metering mirror (issue 3, telemetry)

__all__ = ["DerDeviceStore", "Store", "TelemetryStore"]
