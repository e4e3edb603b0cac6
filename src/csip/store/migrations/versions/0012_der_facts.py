"""Issue 12: typed DER facts, one row per DER, and each device's hourly reading record.

Revision ID: 0012
Revises: 0009 (the lead re-chains numbers at merge)
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None


def _device() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "end_device_id",
        sa.Integer(),
        sa.ForeignKey("end_device.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def upgrade() -> None:
    floats = (
        "rtg_max_w",
        "rtg_max_wh",
        "rtg_max_charge_rate_w",
        "rtg_max_discharge_rate_w",
        "set_max_w",
        "set_max_wh",
        "set_max_charge_rate_w",
        "set_max_discharge_rate_w",
        "state_of_charge",
        "reserve_percent",
        "reserve_charge_percent",
        "stat_w_avail",
        "w",
        "soc",
        "site_reserve_percent",
    )
    times = (
        "capability_at",
        "settings_at",
        "status_at",
        "availability_duration",
        "availability_at",
        "w_at",
        "soc_at",
        "requested_post_rate",
        "profile_hour",
    )
    op.create_table(
        "der_facts",
        _device(),
        *(sa.Column(name, sa.Float(), nullable=True) for name in floats),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in times),
        sa.Column("storage_mode", sa.Integer(), nullable=True),
        sa.Column("operational_mode", sa.Integer(), nullable=True),
        sa.Column("profile", sa.LargeBinary(), nullable=True),
    )
    op.create_table(
        "der_hour",
        _device(),
        sa.Column("slot", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("w_sum", sa.Float(), nullable=False),
        sa.Column("w_count", sa.Integer(), nullable=False),
        sa.Column("first_start", sa.BigInteger(), nullable=True),
        sa.Column("last_start", sa.BigInteger(), nullable=True),
        sa.Column("soc", sa.Float(), nullable=True),
        sa.Column("soc_at", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("der_hour")
    op.drop_table("der_facts")
