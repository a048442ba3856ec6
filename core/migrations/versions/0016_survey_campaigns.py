"""satisfaction survey campaigns and their invitations

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 13:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import suifang.core.db
import suifang.core.security.crypto

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "survey_campaign",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("survey_id", sa.String(length=64), nullable=False),
        sa.Column("department_code", sa.String(length=64), nullable=True),
        sa.Column("discharged_from", sa.Date(), nullable=False),
        sa.Column("discharged_to", sa.Date(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("every_days", sa.Integer(), nullable=True),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False, unique=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", suifang.core.db.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_survey_campaign_status", "survey_campaign", ["status"])
    op.create_table(
        "survey_invitation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("survey_campaign.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column(
            "patient_id", sa.Integer(), sa.ForeignKey("patient.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "encounter_id",
            sa.Integer(),
            sa.ForeignKey("encounter.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("department_code", sa.String(length=64), nullable=False),
        sa.Column("ward", sa.String(length=64), nullable=True),
        sa.Column("doctor", suifang.core.security.crypto.EncryptedText(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("sent_at", suifang.core.db.UTCDateTime(), nullable=True),
        sa.Column("answered_at", suifang.core.db.UTCDateTime(), nullable=True),
        sa.Column("answers", suifang.core.security.crypto.EncryptedJSON(), nullable=True),
        sa.Column("comment", suifang.core.security.crypto.EncryptedText(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("campaign_id", "round", "encounter_id"),
    )
    op.create_index("ix_survey_invitation_campaign_id", "survey_invitation", ["campaign_id"])
    op.create_index("ix_survey_invitation_patient_id", "survey_invitation", ["patient_id"])
    op.create_index(
        "ix_survey_invitation_department_code", "survey_invitation", ["department_code"]
    )
    op.create_index("ix_survey_invitation_status", "survey_invitation", ["status"])


def downgrade() -> None:
    op.drop_table("survey_invitation")
    op.drop_table("survey_campaign")
