"""open contact systems: a channel's own system names (dingtalk_userid, wecom_userid …)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 08:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact_point") as batch:
        batch.alter_column(
            "system", existing_type=sa.String(length=16), type_=sa.String(length=64)
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_point") as batch:
        batch.alter_column(
            "system", existing_type=sa.String(length=64), type_=sa.String(length=16)
        )
