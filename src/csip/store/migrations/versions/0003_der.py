"""DER function set: groups, memberships, programs, controls, defaults, curves, responses.

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("der",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "der_group",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column("description", sa.String(32), nullable=False),
        sa.Column("level", sa.String(32), nullable=True),
        sa.Column(
            "parent_id",
            sa.Integer(),
            sa.ForeignKey("der_group.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_der_group_parent_id", "der_group", ["parent_id"])
    op.create_table(
        "der_group_member",
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("der_group.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_der_group_member_end_device_id", "der_group_member", ["end_device_id"])
    op.create_table(
        "der_program",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("der_group.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("description", sa.String(32), nullable=False),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_der_program_group_id", "der_program", ["group_id"])
    op.create_table(
        "der_control",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column(
            "program_id",
            sa.Integer(),
            sa.ForeignKey("der_program.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("description", sa.String(32), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.BigInteger(), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        sa.Column("randomize_start", sa.Integer(), nullable=True),
        sa.Column("randomize_duration", sa.Integer(), nullable=True),
        sa.Column("response_required", sa.String(2), nullable=True),
        sa.Column("cancelled_at", sa.BigInteger(), nullable=True),
        sa.Column("cancel_randomized", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_der_control_program_id", "der_control", ["program_id"])
    op.create_table(
        "der_default_control",
        sa.Column(
            "program_id",
            sa.Integer(),
            sa.ForeignKey("der_program.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "der_curve",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column(
            "program_id",
            sa.Integer(),
            sa.ForeignKey("der_program.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("curve_type", sa.Integer(), nullable=False),
        sa.Column("points", sa.Text(), nullable=False),
        sa.Column("x_multiplier", sa.Integer(), nullable=False),
        sa.Column("y_multiplier", sa.Integer(), nullable=False),
        sa.Column("y_ref_type", sa.Integer(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(32), nullable=False),
        sa.Column("extras", sa.Text(), nullable=False),
    )
    op.create_index("ix_der_curve_program_id", "der_curve", ["program_id"])
    op.create_table(
        "der_response",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "control_id",
            sa.Integer(),
            sa.ForeignKey("der_control.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("lfdi", sa.String(40), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_date_time", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_der_response_control_id", "der_response", ["control_id"])
    op.create_index("ix_der_response_end_device_id", "der_response", ["end_device_id"])


def downgrade() -> None:
    for table in (
        "der_response", "der_curve", "der_default_control", "der_control", "der_program",
        "der_group_member", "der_group",
    ):  # fmt: skip
        op.drop_table(table)
