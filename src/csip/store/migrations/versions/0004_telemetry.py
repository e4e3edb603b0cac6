"""Telemetry: MirrorUsagePoints, MirrorMeterReadings (with their ReadingType), Readings.

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_usage_point",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column("description", sa.String(32), nullable=True),
        sa.Column("role_flags", sa.Integer(), nullable=False),
        sa.Column("service_category_kind", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("requested_post_rate", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("end_device_id", "mrid", name="uq_mup_device_mrid"),
    )
    op.create_index("ix_mirror_usage_point_end_device_id", "mirror_usage_point", ["end_device_id"])
    op.create_table(
        "mirror_meter_reading",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "mup_id",
            sa.Integer(),
            sa.ForeignKey("mirror_usage_point.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column("description", sa.String(32), nullable=True),
        sa.Column("uom", sa.Integer(), nullable=False),
        sa.Column("power_of_ten_multiplier", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=True),
        sa.Column("phase", sa.Integer(), nullable=True),
        sa.Column("flow_direction", sa.Integer(), nullable=True),
        sa.Column("data_qualifier", sa.Integer(), nullable=True),
        sa.Column("accumulation_behaviour", sa.Integer(), nullable=True),
        sa.Column("commodity", sa.Integer(), nullable=True),
        sa.Column("interval_length", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("mup_id", "mrid", name="uq_mmr_mup_mrid"),
    )
    op.create_index("ix_mirror_meter_reading_mup_id", "mirror_meter_reading", ["mup_id"])
    op.create_table(
        "reading",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "mmr_id",
            sa.Integer(),
            sa.ForeignKey("mirror_meter_reading.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("power_of_ten_multiplier", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.BigInteger(), nullable=True),
        sa.Column("quality_flags", sa.Integer(), nullable=True),
        sa.Column("local_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("mmr_id", "start", name="uq_reading_mmr_start"),
    )
    op.create_index("ix_reading_device_start", "reading", ["end_device_id", "start"])


def downgrade() -> None:
    op.drop_index("ix_reading_device_start", "reading")
    op.drop_table("reading")
    op.drop_index("ix_mirror_meter_reading_mup_id", "mirror_meter_reading")
    op.drop_table("mirror_meter_reading")
    op.drop_index("ix_mirror_usage_point_end_device_id", "mirror_usage_point")
    op.drop_table("mirror_usage_point")
