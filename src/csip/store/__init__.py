"""Persistence: the only package that imports sqlmodel/sqlalchemy. Returns domain objects."""

from csip.store.store import Store

__all__ = ["Store"]
