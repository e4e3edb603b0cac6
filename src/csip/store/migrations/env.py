"""Alembic environment: runs on a connection csip hands over (see Store.migrate)."""

from alembic import context
from sqlmodel import SQLModel

import csip.store.tables
import csip.store.tables_changes
import csip.store.tables_der
import csip.store.tables_dispatch  # per-device dispatch (issue 12)
import csip.store.tables_engine  # program engine (issue 10)
import csip.store.tables_engine_reports  # its reports (issue 10 item 5)
import csip.store.tables_messaging
import csip.store.tables_operators  # noqa: F401 - console operators, audit log (issue 13)

# VTN and outbox (issue 4), typed DER facts (issue 12)
from csip.store import tables_fleet, tables_openadr, tables_outbox  # noqa: F401

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
