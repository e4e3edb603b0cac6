"""Issue 10 item 7: time-driven notifications. One row per (program, moment) at which its
controls started or ended and its subscribers were told: the claim that makes several workers
tell each boundary once.

Revision ID: 0011
Revises: 0008 (der_program comes from 0003, before it)
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "der_boundary_notice",
        sa.Column(
            "program_id",
            sa.Integer(),
            sa.ForeignKey("der_program.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("moment", sa.BigInteger(), primary_key=True),
    )
    op.create_index("ix_der_boundary_notice_moment", "der_boundary_notice", ["moment"])


def downgrade() -> None:
    op.drop_index("ix_der_boundary_notice_moment", table_name="der_boundary_notice")
    op.drop_table("der_boundary_notice")
