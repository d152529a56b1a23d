"""Track which finished tasks have their episode in Qdrant.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_tasks_unindexed", "tasks", ["finished_at"],
                    postgresql_where=sa.text("indexed_at IS NULL AND finished_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_tasks_unindexed", table_name="tasks")
    op.drop_column("tasks", "indexed_at")
