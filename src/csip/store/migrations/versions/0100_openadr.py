"""OpenADR 3 VTN: objects (programs, events, reports, subscriptions, vens, resources), clients.

Revision ID: 0100
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0100"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oadr_object",
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("ven_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("unique_key", sa.String(200), nullable=True),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("modified_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_oadr_object_id", "oadr_object", ["id"], unique=True)
    op.create_index("ix_oadr_object_event_id", "oadr_object", ["event_id"])
    op.create_index("ix_oadr_object_client_id", "oadr_object", ["client_id"])
    op.create_index("ix_oadr_object_ven_id", "oadr_object", ["ven_id"])
    op.create_index("ix_oadr_object_unique_key", "oadr_object", ["kind", "unique_key"], unique=True)
    op.create_index("ix_oadr_object_kind_program", "oadr_object", ["kind", "program_id"])
    op.create_table(
        "vtn_client",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_vtn_client_name", "vtn_client", ["name"], unique=True)
    op.create_index("ix_vtn_client_client_id", "vtn_client", ["client_id"], unique=True)


def downgrade() -> None:
    op.drop_table("vtn_client")
    op.drop_table("oadr_object")
