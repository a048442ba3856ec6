"""Ticket categories: what a message is about, and the one definition of which are clinical.

A category decides who owns a ticket (the routing table maps it to a department; clinical
categories default to the patient's discharge department) and which clock it runs on: a
clinical ticket — symptoms, medicines, wounds, rehabilitation, diet, results, the mind — is
a health matter and runs on the 24/7 clinical SLA; the others (complaints, billing,
administration) on business hours. Journeys, triage, routing, the SLA policy and the KPIs all
ask :func:`is_clinical`; nothing else keeps a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CATEGORIES",
    "CATEGORY_IDS",
    "CLINICAL_CATEGORIES",
    "Category",
    "category",
    "is_clinical",
]


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    kind: Literal["clinical", "service", "feedback", "task"]
    """clinical: a health matter; service: a question or complaint about a hospital service;
    feedback: suggestions and praise; task: work the platform itself creates."""
    zh_cn: str
    en: str

    @property
    def clinical(self) -> bool:
        return self.kind == "clinical"


CATEGORIES: tuple[Category, ...] = (
    Category("clinical_symptom", "clinical", "症状", "Symptoms"),
    Category("medication", "clinical", "用药", "Medication"),
    Category("wound_care", "clinical", "伤口护理", "Wound care"),
    Category("rehabilitation", "clinical", "康复", "Rehabilitation"),
    Category("diet_lifestyle", "clinical", "饮食与生活方式", "Diet and lifestyle"),
    Category("test_results", "clinical", "检查结果", "Test results"),
    Category("psychological", "clinical", "心理", "Psychological"),
    Category("appointment", "service", "预约复诊", "Appointments"),
    Category("billing", "service", "费用", "Billing"),
    Category("insurance", "service", "医保", "Medical insurance"),
    Category("medical_records", "service", "病案", "Medical records"),
    Category("parking", "service", "停车", "Parking"),
    Category("food", "service", "餐饮", "Food"),
    Category("environment", "service", "环境与设施", "Environment and facilities"),
    Category("waiting_time", "service", "候诊等待", "Waiting times"),
    Category("staff_attitude", "service", "服务态度", "Staff attitude"),
    Category("doctor_conduct", "service", "医生诊疗", "Doctors' conduct"),
    Category("nursing_care", "service", "护理服务", "Nursing care"),
    Category("other", "service", "其他", "Other"),
    Category("suggestion", "feedback", "建议", "Suggestion"),
    Category("praise", "feedback", "表扬", "Praise"),
    Category("call_task", "task", "电话随访", "Phone follow-up"),
)
CATEGORY_IDS: tuple[str, ...] = tuple(c.id for c in CATEGORIES)
CLINICAL_CATEGORIES: frozenset[str] = frozenset(c.id for c in CATEGORIES if c.clinical)
_BY_ID = {c.id: c for c in CATEGORIES}


def category(category_id: str) -> Category | None:
    return _BY_ID.get(category_id)


def is_clinical(category_id: str) -> bool:
    """Whether a ticket of this category is a health matter (24/7 clinical clock, discharge
    department by default). Unknown categories (a plugin's own) are not clinical."""
    known = _BY_ID.get(category_id)
    return known is not None and known.clinical
