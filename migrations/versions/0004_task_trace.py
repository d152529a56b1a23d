"""Keep the trace a task was submitted in, so a retry or a re-dispatch can link back to it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("trace_id", sa.String(32), nullable=True))
    op.add_column("tasks", sa.Column("trace_span_id", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "trace_span_id")
    op.drop_column("tasks", "trace_id")
