"""The program engine's reports (issue 10 item 5): one claimable row per event csip reports on.

Revision ID: 0013
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_report",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("report_id", sa.String(64), nullable=True),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_report")
