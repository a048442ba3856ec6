"""The system of record: every table, re-exported so importing this module registers them all."""

from __future__ import annotations

from suifang.core.models.base import metadata
from suifang.core.models.departments import (
    Department,
    DepartmentBase,
    DepartmentCreate,
    DepartmentPublic,
)
from suifang.core.models.encounters import ENCOUNTER_KINDS, Encounter
from suifang.core.models.idempotency import IdempotencyRecord
from suifang.core.models.interop import HL7_STATUSES, HisDepartmentCode, Hl7Message
from suifang.core.models.journeys import (
    Alert,
    Answer,
    Enrollment,
    Observation,
    PointsEntry,
    TouchpointRecord,
)
from suifang.core.models.messages import DeliveryAttempt, InboundRecord, Message
from suifang.core.models.oncall import (
    DUTY_OFFICE,
    ON_CALL_ROLES,
    OnCallShift,
    PagingPolicy,
    StaffContact,
)
from suifang.core.models.pathways import PATHWAY_STATUSES, PathwayVersion
from suifang.core.models.patients import ContactPoint, Patient
from suifang.core.models.security import ApiToken, AuditLog, StaffUser
from suifang.core.models.surveys import SurveyCampaign, SurveyInvitation
from suifang.core.models.tags import PatientTag, PatientTagChange
from suifang.core.models.tickets import (
    PraiseRecord,
    RoutingRule,
    StaffNotification,
    Ticket,
    TicketEvent,
    TicketNote,
)
from suifang.core.models.webhooks import WebhookRejection, WebhookReplay

__all__ = [
    "DUTY_OFFICE",
    "ENCOUNTER_KINDS",
    "HL7_STATUSES",
    "ON_CALL_ROLES",
    "PATHWAY_STATUSES",
    "Alert",
    "Answer",
    "ApiToken",
    "AuditLog",
    "ContactPoint",
    "DeliveryAttempt",
    "Department",
    "DepartmentBase",
    "DepartmentCreate",
    "DepartmentPublic",
    "Encounter",
    "Enrollment",
    "HisDepartmentCode",
    "Hl7Message",
    "IdempotencyRecord",
    "InboundRecord",
    "Message",
    "Observation",
    "OnCallShift",
    "PagingPolicy",
    "PathwayVersion",
    "Patient",
    "PatientTag",
    "PatientTagChange",
    "PointsEntry",
    "PraiseRecord",
    "RoutingRule",
    "StaffContact",
    "StaffNotification",
    "StaffUser",
    "SurveyCampaign",
    "SurveyInvitation",
    "Ticket",
    "TicketEvent",
    "TicketNote",
    "TouchpointRecord",
    "WebhookRejection",
    "WebhookReplay",
    "metadata",
]
