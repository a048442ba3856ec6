"""auto-tags: the tags a patient has, and every change

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 12:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suifang.core.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patient_tag",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "patient_id",
            sa.Integer(),
            sa.ForeignKey("patient.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("since", suifang.core.db.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("patient_id", "tag"),
    )
    op.create_index("ix_patient_tag_patient_id", "patient_tag", ["patient_id"])
    op.create_index("ix_patient_tag_tag", "patient_tag", ["tag"])
    op.create_table(
        "patient_tag_change",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "patient_id",
            sa.Integer(),
            sa.ForeignKey("patient.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("change", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("at", suifang.core.db.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_patient_tag_change_patient_id", "patient_tag_change", ["patient_id"])
    op.create_index("ix_patient_tag_change_tag", "patient_tag_change", ["tag"])
    op.create_index("ix_patient_tag_change_at", "patient_tag_change", ["at"])


def downgrade() -> None:
    op.drop_table("patient_tag_change")
    op.drop_table("patient_tag")
