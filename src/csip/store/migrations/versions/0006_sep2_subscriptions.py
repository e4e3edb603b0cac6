"""2030.5 subscriptions (notifications go through the outbox).

Revision ID: 0006
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sep2_subscription",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "end_device_id",
            sa.Integer(),
            sa.ForeignKey("end_device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("subscribed_resource", sa.String(255), nullable=False),
        sa.Column("notification_uri", sa.Text(), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sep2_subscription_end_device_id", "sep2_subscription", ["end_device_id"])
    op.create_index(
        "ix_sep2_subscription_subscribed_resource", "sep2_subscription", ["subscribed_resource"]
    )


def downgrade() -> None:
    op.drop_table("sep2_subscription")
