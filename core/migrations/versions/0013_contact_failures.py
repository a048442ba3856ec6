"""contact failures: a contact point a channel said is wrong or gone

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 08:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suifang.core.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact_point") as batch:
        batch.add_column(sa.Column("failed_at", suifang.core.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("failed_reason", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact_point") as batch:
        batch.drop_column("failed_reason")
        batch.drop_column("failed_at")
