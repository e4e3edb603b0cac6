"""DER function set, what devices post: LogEvents (DER documents use device_document).

Revision ID: 0005
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_date_time", sa.BigInteger(), nullable=False),
        sa.Column("log_event_id", sa.Integer(), nullable=False),
        sa.Column("log_event_code", sa.Integer(), nullable=False),
        sa.Column("function_set", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("log_event_pen", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
    )
    op.create_index(
        "ix_log_event_device_order",
        "log_event",
        ["end_device_id", "created_date_time", "log_event_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_log_event_device_order", "log_event")
    op.drop_table("log_event")
