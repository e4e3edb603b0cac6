"""Foundation: aggregators, client certificates, EndDevices, device documents, settings.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregator",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_aggregator_name", "aggregator", ["name"], unique=True)
    op.create_table(
        "client_certificate",
        sa.Column("lfdi", sa.String(40), primary_key=True),
        sa.Column(
            "aggregator_id",
            sa.Integer(),
            sa.ForeignKey("aggregator.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_client_certificate_aggregator_id", "client_certificate", ["aggregator_id"])
    op.create_table(
        "end_device",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("lfdi", sa.String(40), nullable=False),
        sa.Column("sfdi", sa.BigInteger(), nullable=False),
        sa.Column("changed_time", sa.BigInteger(), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("pin", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("device_category", sa.String(8), nullable=True),
        sa.Column("post_rate", sa.Integer(), nullable=True),
        sa.Column(
            "aggregator_id",
            sa.Integer(),
            sa.ForeignKey("aggregator.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("in_band", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_end_device_lfdi", "end_device", ["lfdi"], unique=True)
    op.create_index("ix_end_device_sfdi", "end_device", ["sfdi"])
    op.create_index("ix_end_device_aggregator_id", "end_device", ["aggregator_id"])
    op.create_table(
        "device_document",
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "setting",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("setting", "device_document", "end_device", "client_certificate", "aggregator"):
        op.drop_table(table)
