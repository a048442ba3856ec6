"""scoped integrator tokens: departments, scopes, and an explicit unscoped flag

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-04 13:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('departments', sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column('scopes', sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column('unscoped', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Integrator tokens issued before scopes existed reach the whole hospital: say so, so that
    # they keep working and show up as unscoped when tokens are listed (and can be replaced).
    op.get_bind().execute(
        sa.text(
            "UPDATE api_token SET unscoped = :yes WHERE user_id IN "
            "(SELECT id FROM staff_user WHERE role = 'integrator')"
        ),
        {"yes": True},
    )


def downgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('unscoped')
        batch_op.drop_column('scopes')
        batch_op.drop_column('departments')
