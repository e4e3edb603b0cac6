"""Issue 9: deleting a group or a program (item 11): they leave devices' lists and stay as
history, so a deletion is a timestamp, never a removed row; and an aggregator certificate's
own EndDevice (item 8, the CSIP-AUS aggregator model), marked so.

Revision ID: 0008
Revises: 0007 (depends on 0006: it alters der_group and der_program, made by 0003)
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = "0006"


def upgrade() -> None:
    for table in ("der_group", "der_program"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("end_device") as batch:
        batch.add_column(
            sa.Column("aggregator_self", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("end_device") as batch:
        batch.drop_column("aggregator_self")
    for table in ("der_group", "der_program"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deleted_at")
