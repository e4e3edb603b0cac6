"""An aggregator's EndDeviceList in page order from one index.

The page query (`WHERE aggregator_id = ? ORDER BY sfdi, id LIMIT ? OFFSET ?`) and its count
read the index on (aggregator_id, sfdi, id) instead of sorting or filtering the whole fleet:
with 100,000 devices a page past the start cost about 100 ms to render without it.

Revision ID: 0015
Revises: 0001
"""

from alembic import op

revision = "0015"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_end_device_fleet_page", "end_device", ["aggregator_id", "sfdi", "id"])


def downgrade() -> None:
    op.drop_index("ix_end_device_fleet_page", table_name="end_device")
