"""A patient's contact points: which one is in use, and staff preferring or retiring them.

Each system (phone, email, wechat, app) can hold several contacts for one patient. The one in
use is the most recently preferred contact that is not retired: a new discharge that gives a
new number makes it the one in use at once, and older ones stay as history. Staff can prefer
an older one again or retire one (a wrong number, a given-up phone); a retired contact is
neither written to nor matched for replies (the number may now be someone else's). A discharge
that repeats a retired contact leaves it retired: the person who retired it knew better than
the feed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from sqlmodel import Session, col, select

from suifang.core.channels import AddressKind, Channel
from suifang.core.db import utcnow
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import ContactPoint, Patient
from suifang.core.security.crypto import blind_index

__all__ = [
    "ADDRESS_SYSTEM",
    "BUILTIN_SYSTEMS",
    "SYSTEM_PATTERN",
    "add_contact",
    "contact_system",
    "contact_views",
    "in_use_order",
    "known_systems",
    "mask",
    "patient_contact",
    "prefer_contact",
    "retire_contact",
]

ADDRESS_SYSTEM: Mapping[AddressKind, str] = MappingProxyType(
    {
        AddressKind.PHONE: "phone",
        AddressKind.EMAIL: "email",
        AddressKind.WECHAT_OPENID: "wechat",
        AddressKind.APP_USER: "app",
    }
)
"""The contact system (``ContactPoint.system``) whose values a channel's addresses are: what
delivery sends to and what an inbound sender is matched against."""

BUILTIN_SYSTEMS = frozenset(ADDRESS_SYSTEM.values())
SYSTEM_PATTERN = r"^[a-z][a-z0-9_.-]{1,63}$"
"""A contact system's name: a channel's own (``dingtalk_userid``, ``wecom_userid``) or a
built-in one."""


def contact_system(channel: Channel | type[Channel]) -> str | None:
    """The system a channel's addresses belong to; None for a channel that needs none."""
    if channel.address_kind == AddressKind.NONE:
        return None
    return channel.contact_system or ADDRESS_SYSTEM.get(channel.address_kind)


def known_systems(channel_classes: Iterable[type[Channel]]) -> frozenset[str]:
    """The built-in systems and every system a loaded channel declares."""
    declared = {contact_system(c) for c in channel_classes}
    return BUILTIN_SYSTEMS | {s for s in declared if s is not None}


def in_use_order() -> tuple[Any, ...]:
    """ORDER BY for a patient's contacts of one system: the one in use first."""
    return (col(ContactPoint.preferred_at).desc(), col(ContactPoint.id).desc())


def mask(system: str, value: str) -> str:
    """Contact details are shown masked: enough to recognise, not to copy."""
    if system == "phone" and len(value) >= 7:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    if system == "email" and "@" in value:
        name, _, domain = value.partition("@")
        return name[:1] + "***@" + domain
    return value[:2] + "***"


def contact_views(session: Session, patient_id: int) -> list[dict[str, Any]]:
    """Every contact of the patient, masked, the ones in use marked, newest first."""
    contacts = session.exec(
        select(ContactPoint).where(ContactPoint.patient_id == patient_id).order_by(*in_use_order())
    ).all()
    in_use: set[str] = set()
    views = []
    for contact in contacts:
        used = (
            contact.retired_at is None
            and contact.failed_at is None
            and contact.system not in in_use
        )
        if used:
            in_use.add(contact.system)
        views.append(
            {
                "id": contact.id,
                "system": contact.system,
                "value": mask(contact.system, contact.value),
                "in_use": used,
                "created_at": contact.created_at,
                "preferred_at": contact.preferred_at,
                "retired_at": contact.retired_at,
                "retired_by": contact.retired_by,
                "failed_at": contact.failed_at,
                "failed_reason": contact.failed_reason,
            }
        )
    return views


def patient_contact(session: Session, patient_id: int, contact_id: int) -> ContactPoint:
    contact = session.get(ContactPoint, contact_id)
    if contact is None or contact.patient_id != patient_id:
        raise NotFoundError(f"patient {patient_id} has no contact {contact_id}")
    return contact


def prefer_contact(
    session: Session, patient_id: int, contact_id: int, *, now: dt.datetime | None = None
) -> ContactPoint:
    """Make this contact the one in use for its system (bringing back a retired one, or one a
    channel said had failed: staff preferring it have confirmed it)."""
    contact = patient_contact(session, patient_id, contact_id)
    contact.preferred_at = now or utcnow()
    contact.retired_at = None
    contact.retired_by = None
    contact.failed_at = None
    contact.failed_reason = None
    session.add(contact)
    session.commit()
    session.refresh(contact)
    return contact


def retire_contact(
    session: Session,
    patient_id: int,
    contact_id: int,
    *,
    actor: str,
    now: dt.datetime | None = None,
) -> ContactPoint:
    """Stop using this contact for sending and for matching replies; keep it as history."""
    contact = patient_contact(session, patient_id, contact_id)
    if contact.retired_at is not None:
        raise ValidationFailed(
            f"contact {contact_id} was already retired on {contact.retired_at:%Y-%m-%d} "
            f"by {contact.retired_by}"
        )
    contact.retired_at = now or utcnow()
    contact.retired_by = actor[:64]
    session.add(contact)
    session.commit()
    session.refresh(contact)
    return contact


def add_contact(
    session: Session,
    patient_id: int,
    system: str,
    value: str,
    *,
    known: frozenset[str],
    now: dt.datetime | None = None,
) -> ContactPoint:
    """Give the patient a contact and make it the one in use for its system (one the patient
    already has is brought back, retired or failed: whoever adds it has checked it)."""
    if session.get(Patient, patient_id) is None:
        raise NotFoundError(f"no patient {patient_id}")
    if system not in known:
        raise ValidationFailed(
            f"system: no channel delivers to {system!r} (known: {', '.join(sorted(known))})"
        )
    value = value.strip()
    if not value or len(value) > 256:
        raise ValidationFailed("value: give the address, at most 256 characters")
    digest = blind_index(system, value)
    contact = session.exec(
        select(ContactPoint).where(
            ContactPoint.patient_id == patient_id,
            ContactPoint.system == system,
            ContactPoint.value_hash == digest,
        )
    ).first()
    if contact is None:
        contact = ContactPoint(patient_id=patient_id, system=system, value=value, value_hash=digest)
    contact.preferred_at = now or utcnow()
    contact.retired_at = contact.retired_by = None
    contact.failed_at = contact.failed_reason = None
    session.add(contact)
    session.commit()
    session.refresh(contact)
    return contact
