"""Authentication and authorisation: API tokens, roles, the permission table, department scope.

Tokens are ``sf_`` + 32 random bytes (URL-safe base64). Only their SHA-256 is stored — a
token has 256 bits of entropy, so a fast hash is as safe as a slow one and keeps every request
cheap — and the token itself is shown once, at creation. A token can expire and be revoked.

Every permission a role has is in :data:`PERMISSIONS`, in one place. Department staff
(agents, nurses, doctors) see only their departments' tickets and journeys, and a patient
only when one of their departments has a ticket or journey for that patient; admins and
auditors see everything; integrators write (intake, events) but read nothing back.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass

from sqlmodel import Session, col, select

from suifang.core.db import utcnow
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import ApiToken, Department, Enrollment, StaffUser, Ticket

__all__ = [
    "PERMISSIONS",
    "Permission",
    "Principal",
    "Role",
    "authenticate",
    "create_user",
    "hash_token",
    "issue_token",
    "patient_in_scope",
    "revoke_token",
]

TOKEN_PREFIX = "sf_"  # noqa: S105 -- a marker, not a secret


class Role(enum.StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    """A department's staff member working its ticket queue (e.g. logistics, billing)."""
    NURSE = "nurse"
    """Specialist (patient-management) nurse: L2."""
    DOCTOR = "doctor"
    """L3: callbacks, clinical decisions."""
    INTEGRATOR = "integrator"
    """A system (HIS, app backend): sends discharges and patient events, reads nothing back."""
    AUDITOR = "auditor"
    """Reads everything, changes nothing."""


class Permission(enum.StrEnum):
    INTAKE_WRITE = "intake:write"
    JOURNEYS_READ = "journeys:read"
    JOURNEYS_ACT = "journeys:act"
    JOURNEYS_ANSWER = "journeys:answer"
    PATIENTS_READ = "patients:read"
    PATIENTS_CONSENT = "patients:consent"
    PATHWAYS_READ = "pathways:read"
    OUTBOX_READ = "outbox:read"
    CHANNELS_READ = "channels:read"
    INBOUND_READ = "inbound:read"
    TICKETS_READ = "tickets:read"
    TICKETS_CREATE = "tickets:create"
    TICKETS_ACT = "tickets:act"
    TICKETS_PATIENT_EVENT = "tickets:patient_event"
    ROUTING_READ = "routing:read"
    ROUTING_WRITE = "routing:write"
    NOTIFICATIONS_READ = "notifications:read"
    REPORTS_READ = "reports:read"
    AUDIT_READ = "audit:read"
    USERS_ADMIN = "users:admin"
    CODEC_DECODE = "codec:decode"


_P = Permission
_CLINICAL_STAFF = {
    _P.JOURNEYS_READ, _P.JOURNEYS_ACT, _P.JOURNEYS_ANSWER, _P.PATIENTS_READ, _P.PATIENTS_CONSENT,
    _P.PATHWAYS_READ, _P.OUTBOX_READ, _P.TICKETS_READ, _P.TICKETS_CREATE, _P.TICKETS_ACT,
    _P.ROUTING_READ, _P.NOTIFICATIONS_READ, _P.REPORTS_READ, _P.INBOUND_READ,
}  # fmt: skip

#: The permission table: what each role may do. Nothing else grants a permission.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.DOCTOR: frozenset(_CLINICAL_STAFF),
    Role.NURSE: frozenset(_CLINICAL_STAFF),
    Role.AGENT: frozenset({
        _P.TICKETS_READ, _P.TICKETS_CREATE, _P.TICKETS_ACT, _P.PATIENTS_READ, _P.PATHWAYS_READ,
        _P.ROUTING_READ, _P.NOTIFICATIONS_READ, _P.REPORTS_READ,
    }),
    Role.INTEGRATOR: frozenset({
        _P.INTAKE_WRITE, _P.JOURNEYS_ANSWER, _P.TICKETS_CREATE, _P.TICKETS_PATIENT_EVENT,
        _P.PATHWAYS_READ, _P.PATIENTS_CONSENT,
    }),
    Role.AUDITOR: frozenset({
        _P.JOURNEYS_READ, _P.PATIENTS_READ, _P.PATHWAYS_READ, _P.OUTBOX_READ, _P.CHANNELS_READ,
        _P.INBOUND_READ, _P.TICKETS_READ, _P.ROUTING_READ, _P.NOTIFICATIONS_READ,
        _P.REPORTS_READ, _P.AUDIT_READ,
    }),
}  # fmt: skip


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, its role and the departments it may see."""

    user_id: int
    username: str
    role: Role
    departments: tuple[str, ...]
    token_id: int | None = None

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    @property
    def scope(self) -> list[str] | None:
        """Departments whose data this principal may see; None means all of them."""
        if self.role in (Role.ADMIN, Role.AUDITOR):
            return None
        return list(self.departments)

    @property
    def actor(self) -> str:
        return self.username


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    role: Role | str,
    departments: list[str] | None = None,
) -> StaffUser:
    role = Role(role)
    departments = departments or []
    if role in (Role.AGENT, Role.NURSE, Role.DOCTOR) and not departments:
        raise ValidationFailed(f"a {role.value} belongs to at least one department (--department)")
    known = set(session.exec(select(Department.code)).all())
    unknown = [d for d in departments if d not in known]
    if unknown:
        raise ValidationFailed(f"unknown department(s): {', '.join(unknown)}")
    if session.exec(select(StaffUser).where(StaffUser.username == username)).first() is not None:
        raise ValidationFailed(f"user {username!r} already exists")
    user = StaffUser(
        username=username, display_name=display_name, role=role, departments=departments
    )
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def issue_token(
    session: Session, user: StaffUser, *, name: str, expires_in: dt.timedelta | None = None
) -> tuple[str, ApiToken]:
    """A new token for ``user``: returns the token (show it once) and its stored record."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        user_id=user.id,  # type: ignore[arg-type]
        name=name,
        token_hash=hash_token(token),
        prefix=token[:10],
        # ``is not None``: a zero lifetime (1e-300 days) must not read as "never expires".
        expires_at=utcnow() + expires_in if expires_in is not None else None,
    )
    session.add(record)
    session.commit()
    session.refresh(record)
    return token, record


def revoke_token(session: Session, token_id: int) -> ApiToken:
    record = session.get(ApiToken, token_id)
    if record is None:
        raise NotFoundError(f"no token {token_id}")
    record.revoked_at = record.revoked_at or utcnow()
    session.add(record)
    session.commit()
    return record


class AuthenticationFailed(Exception):
    """No, wrong, expired or revoked token (→ 401, always the same message)."""


def authenticate(
    session: Session, token: str | None, *, now: dt.datetime | None = None
) -> Principal:
    if not token or not token.startswith(TOKEN_PREFIX):
        raise AuthenticationFailed
    record = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    now = now or utcnow()
    if record is None or record.revoked_at is not None:
        raise AuthenticationFailed
    if record.expires_at is not None and record.expires_at <= now:
        raise AuthenticationFailed
    user = session.get(StaffUser, record.user_id)
    if user is None or not user.active:
        raise AuthenticationFailed
    if record.last_used_at is None or now - record.last_used_at > dt.timedelta(minutes=5):
        record.last_used_at = now  # coarse, so reads do not write on every request
        session.add(record)
        session.commit()
    return Principal(
        user_id=user.id,  # type: ignore[arg-type]
        username=user.username,
        role=Role(user.role),
        departments=tuple(user.departments),
        token_id=record.id,
    )


def patient_in_scope(session: Session, patient_id: int, departments: list[str] | None) -> bool:
    """Whether a department in ``departments`` has a journey or ticket for this patient."""
    if departments is None:
        return True
    if not departments:
        return False
    journey = session.exec(
        select(Enrollment.id).where(
            Enrollment.patient_id == patient_id, col(Enrollment.department_code).in_(departments)
        )
    ).first()
    if journey is not None:
        return True
    ticket = session.exec(
        select(Ticket.id).where(
            Ticket.patient_id == patient_id, col(Ticket.department_code).in_(departments)
        )
    ).first()
    return ticket is not None
