"""DER resources a device posts (DERList, DER, DERCapability, DERSettings, DERStatus,
DERAvailability, AssociatedDERProgramList, CurrentDERProgram, ConnectionPoint) and LogEvents."""

from __future__ import annotations

from aiohttp import web

from csip.services.sep2 import Sep2Service


def setup(app: web.Application, service: Sep2Service) -> None:
    """Add this function set's routes (and services) to the 2030.5 app."""
