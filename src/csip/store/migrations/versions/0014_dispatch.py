"""Issue 12 items 3-4: per-device dispatch (a program's choice, plans, device controls).

Revision ID: 0014
Revises: 0009 (the lead re-chains numbers at merge)
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engine_program") as batch:
        batch.add_column(
            sa.Column("dispatch", sa.String(16), nullable=False, server_default="group")
        )
    op.create_table(
        "dispatch_plan",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.Integer(), primary_key=True),
        sa.Column("planned_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
    )
    op.create_table(
        "dispatch_control",
        sa.Column(
            "control_id",
            sa.Integer(),
            sa.ForeignKey("der_control.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("interval_ids", sa.Text(), nullable=False),
    )
    op.create_index("ix_dispatch_control_event", "dispatch_control", ["event_id", "device_id"])


def downgrade() -> None:
    op.drop_index("ix_dispatch_control_event", "dispatch_control")
    op.drop_table("dispatch_control")
    op.drop_table("dispatch_plan")
    with op.batch_alter_table("engine_program") as batch:
        batch.drop_column("dispatch")
