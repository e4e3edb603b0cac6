"""The program engine (issue 10): group target names, program choices, enrollments, and which
controls each event produced for each group.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("der_group") as batch:
        batch.add_column(sa.Column("target", sa.String(128), nullable=True))
        batch.create_index("ix_der_group_target", ["target"], unique=True)
    op.create_table(
        "engine_program",
        sa.Column("program_id", sa.String(64), primary_key=True),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("simple_levels", sa.Text(), nullable=False),
        sa.Column("notice_before", sa.Text(), nullable=True),
        sa.Column("notice_after", sa.Text(), nullable=True),
        sa.Column("notice_lead", sa.Integer(), nullable=False),
        sa.Column("originator", sa.String(20), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
    )
    op.create_table(
        "engine_forced",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, index=True),
        sa.Column("forced_at", sa.BigInteger(), nullable=False),
        sa.Column("broken", sa.Text(), nullable=False),
    )
    op.create_table(
        "engine_enrollment",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("program_id", sa.String(64), nullable=False, index=True),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("der_group.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "der_program_id",
            sa.Integer(),
            sa.ForeignKey("der_program.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_engine_enrollment_program_group",
        "engine_enrollment",
        ["program_id", "group_id"],
        unique=True,
    )
    op.create_table(
        "engine_control",
        sa.Column(
            "control_id",
            sa.Integer(),
            sa.ForeignKey("der_control.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("interval_ids", sa.Text(), nullable=False),
    )
    op.create_index("ix_engine_control_event", "engine_control", ["event_id", "group_id"])
    op.create_table(
        "engine_mapping",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.Integer(), primary_key=True),
        sa.Column("planned_at", sa.BigInteger(), nullable=False),
        sa.Column("unmapped", sa.Text(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "engine_forced",
        "engine_mapping",
        "engine_control",
        "engine_enrollment",
        "engine_program",
    ):
        op.drop_table(table)
    with op.batch_alter_table("der_group") as batch:
        batch.drop_index("ix_der_group_target")
        batch.drop_column("target")
