"""idempotency keys per caller and body; contacts in use, preferred and retired

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suifang.core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=96), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("internal_key", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", suifang.core.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", suifang.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_record")),
        sa.UniqueConstraint("internal_key", name=op.f("uq_idempotency_record_internal_key")),
        sa.UniqueConstraint(
            "principal", "route", "key_hash", name=op.f("uq_idempotency_record_principal")
        ),
    )
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_record_expires_at"), ["expires_at"], unique=False
        )

    # Until now the first contact won; from now the newest does. Existing contacts are
    # preferred as of their creation, so the newest of them becomes the one in use.
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.add_column(sa.Column("preferred_at", suifang.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("retired_at", suifang.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("retired_by", sa.String(length=64), nullable=True))
    op.execute("UPDATE contact_point SET preferred_at = created_at")
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.alter_column(
            "preferred_at", existing_type=suifang.core.db.UTCDateTime(), nullable=False
        )
        batch_op.drop_column("rank")


def downgrade() -> None:
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rank", sa.Integer(), nullable=False, server_default="1"))
        batch_op.drop_column("retired_by")
        batch_op.drop_column("retired_at")
        batch_op.drop_column("preferred_at")
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_record_expires_at"))
    op.drop_table("idempotency_record")
