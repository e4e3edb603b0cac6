"""Messaging function set (issue 10 item 6): one MessagingProgram per group, TextMessages.

Revision ID: 0010
Revises: 0008 (der_group, which messaging_program references, is 0003's)
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messaging_program",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("der_group.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("description", sa.String(32), nullable=False),
        sa.Column("locale", sa.String(42), nullable=False),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_messaging_program_group_id", "messaging_program", ["group_id"], unique=True)
    op.create_table(
        "text_message",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mrid", sa.String(32), nullable=False),
        sa.Column(
            "program_id",
            sa.Integer(),
            sa.ForeignKey("messaging_program.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("originator", sa.String(20), nullable=True),
        sa.Column("cancelled_at", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
    )
    op.create_index("ix_text_message_program_id", "text_message", ["program_id"])
    op.create_index("ix_text_message_source", "text_message", ["source"])


def downgrade() -> None:
    op.drop_index("ix_text_message_source", "text_message")
    op.drop_index("ix_text_message_program_id", "text_message")
    op.drop_table("text_message")
    op.drop_index("ix_messaging_program_group_id", "messaging_program")
    op.drop_table("messaging_program")
