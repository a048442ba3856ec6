"""Authentication and authorisation: API tokens, roles, the permission table, department scope.

Tokens are ``sf_`` + 32 random bytes (URL-safe base64). Only their SHA-256 is stored — a
token has 256 bits of entropy, so a fast hash is as safe as a slow one and keeps every request
cheap — and the token itself is shown once, at creation. A token can expire and be revoked.

Every permission a role has is in :data:`PERMISSIONS`, in one place. Department staff
(agents, nurses, doctors) see only their departments' tickets and journeys, and a patient
only when one of their departments has a ticket or journey for that patient; admins and
auditors see everything; integrators write (intake, events) but read nothing back.

An integrator token is narrower still: it names the departments it feeds and its
:class:`Scope` s (the routes its feed needs, :data:`SCOPE_PERMISSIONS`). Outside its scopes it
gets 403; a journey, ticket or patient outside its departments is 404, like one that does not
exist. A hospital-wide integrator token is an explicit choice (``unscoped``), recorded on the
token and shown when tokens are listed.
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
from suifang.core.models import ApiToken, Department, Encounter, Enrollment, StaffUser, Ticket

__all__ = [
    "PERMISSIONS",
    "SCOPE_PERMISSIONS",
    "Permission",
    "Principal",
    "Role",
    "Scope",
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
    PATHWAYS_WRITE = "pathways:write"
    OUTBOX_READ = "outbox:read"
    CHANNELS_READ = "channels:read"
    INBOUND_READ = "inbound:read"
    HL7_READ = "hl7:read"
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
    METRICS_READ = "metrics:read"


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
        _P.PATHWAYS_READ, _P.PATIENTS_CONSENT, _P.METRICS_READ,
    }),
    Role.AUDITOR: frozenset({
        _P.JOURNEYS_READ, _P.PATIENTS_READ, _P.PATHWAYS_READ, _P.OUTBOX_READ, _P.CHANNELS_READ,
        _P.INBOUND_READ, _P.TICKETS_READ, _P.ROUTING_READ, _P.NOTIFICATIONS_READ,
        _P.REPORTS_READ, _P.AUDIT_READ, _P.HL7_READ, _P.METRICS_READ,
    }),
}  # fmt: skip


class Scope(enum.StrEnum):
    """What an integrator token is for: each scope opens the routes one kind of feed needs."""

    INTAKE = "intake"
    """The discharge feed (HIS): register discharges, read the pathway catalogue."""
    ANSWERS = "answers"
    """The patient app or a device feed: questionnaire answers and observations for journeys."""
    TICKETS = "tickets"
    """The patient app's messages: open tickets, report replies and satisfaction scores."""
    CONTACTS = "contacts"
    """A consent system: record that a patient withdrew consent (do-not-contact)."""
    METRICS = "metrics"
    """A metrics scraper (Prometheus): read ``/metrics``, counts with no patient data."""


_SCOPE_NAMES = frozenset(s.value for s in Scope)

#: What each integrator scope permits. A scoped token may do what its role may *and* one of
#: its scopes permits; nothing else.
SCOPE_PERMISSIONS: dict[Scope, frozenset[Permission]] = {
    Scope.INTAKE: frozenset({Permission.INTAKE_WRITE, Permission.PATHWAYS_READ}),
    Scope.ANSWERS: frozenset({Permission.JOURNEYS_ANSWER}),
    Scope.TICKETS: frozenset({Permission.TICKETS_CREATE, Permission.TICKETS_PATIENT_EVENT}),
    Scope.CONTACTS: frozenset({Permission.PATIENTS_CONSENT}),
    Scope.METRICS: frozenset({Permission.METRICS_READ}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, its role and the departments it may see.

    ``scopes`` is None for every token but a scoped integrator token, whose ``departments``
    are the token's own.
    """

    user_id: int
    username: str
    role: Role
    departments: tuple[str, ...]
    token_id: int | None = None
    scopes: frozenset[Scope] | None = None
    unscoped: bool = False

    @property
    def permissions(self) -> frozenset[Permission]:
        granted = PERMISSIONS[self.role]
        if self.scopes is None:
            return granted
        return granted & frozenset().union(*(SCOPE_PERMISSIONS[s] for s in self.scopes))

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def refusal(self, permission: Permission) -> str:
        """Why ``permission`` is refused, for the 403's message."""
        if permission in PERMISSIONS[self.role]:
            needed = sorted(s.value for s, p in SCOPE_PERMISSIONS.items() if permission in p)
            held = ", ".join(sorted(s.value for s in self.scopes or ())) or "none"
            return (
                f"this token's scopes ({held}) do not include "
                f"{' or '.join(needed)} ({permission.value})"
            )
        return f"the {self.role.value} role may not do this ({permission.value})"

    @property
    def scope(self) -> list[str] | None:
        """Departments whose data this principal may see; None means all of them."""
        if self.role in (Role.ADMIN, Role.AUDITOR) or self.unscoped:
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


def _token_limits(
    session: Session,
    user: StaffUser,
    departments: list[str] | None,
    scopes: list[Scope | str] | None,
    unscoped: bool,
) -> tuple[list[str], list[str]]:
    """The departments and scopes a new token is limited to, checked; ValidationFailed says
    what is missing or wrong."""
    departments, scopes = list(departments or []), list(scopes or [])
    if Role(user.role) != Role.INTEGRATOR:
        if departments or scopes or unscoped:
            raise ValidationFailed(
                "departments, scopes and unscoped are for integrator tokens; a "
                f"{user.role} token acts with its account's role and departments"
            )
        return [], []
    if unscoped:
        if departments or scopes:
            raise ValidationFailed(
                "an unscoped token reaches every department and every integrator route: "
                "give either unscoped, or departments and scopes, not both"
            )
        return [], []
    # A metrics scraper reads counts with no patient in them: no department to limit it to.
    metrics_only = bool(scopes) and {str(s) for s in scopes} == {Scope.METRICS.value}
    if not scopes or (not departments and not metrics_only):
        raise ValidationFailed(
            "an integrator token is limited to departments (--department) and scopes "
            f"(--scope: {', '.join(s.value for s in Scope)}); "
            "create a hospital-wide token only on purpose, with unscoped (--unscoped)"
        )
    unknown_scopes = [str(s) for s in scopes if str(s) not in _SCOPE_NAMES]
    if unknown_scopes:
        raise ValidationFailed(
            f"unknown scope(s): {', '.join(unknown_scopes)} "
            f"(known: {', '.join(s.value for s in Scope)})"
        )
    known = set(session.exec(select(Department.code)).all())
    unknown = [d for d in departments if d not in known]
    if unknown:
        raise ValidationFailed(f"unknown department(s): {', '.join(unknown)}")
    return sorted(set(departments)), sorted({Scope(s).value for s in scopes})


def issue_token(
    session: Session,
    user: StaffUser,
    *,
    name: str,
    expires_in: dt.timedelta | None = None,
    departments: list[str] | None = None,
    scopes: list[Scope | str] | None = None,
    unscoped: bool = False,
) -> tuple[str, ApiToken]:
    """A new token for ``user``: returns the token (show it once) and its stored record.

    An integrator token needs ``departments`` and ``scopes``, or ``unscoped=True`` for a
    deliberately hospital-wide one.
    """
    departments, scopes = _token_limits(session, user, departments, scopes, unscoped)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        user_id=user.id,  # type: ignore[arg-type]
        name=name,
        token_hash=hash_token(token),
        prefix=token[:10],
        # ``is not None``: a zero lifetime (1e-300 days) must not read as "never expires".
        expires_at=utcnow() + expires_in if expires_in is not None else None,
        departments=departments,
        scopes=scopes,
        unscoped=unscoped,
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
    role = Role(user.role)
    if role == Role.INTEGRATOR and not record.unscoped:
        # A scoped integrator token: its own departments and scopes. An integrator token with
        # neither (written by hand into the database) reaches nothing at all.
        return Principal(
            user_id=user.id,  # type: ignore[arg-type]
            username=user.username,
            role=role,
            departments=tuple(record.departments),
            token_id=record.id,
            scopes=frozenset(Scope(s) for s in record.scopes if s in _SCOPE_NAMES),
        )
    return Principal(
        user_id=user.id,  # type: ignore[arg-type]
        username=user.username,
        role=role,
        departments=tuple(user.departments),
        token_id=record.id,
        unscoped=role == Role.INTEGRATOR,
    )


def patient_in_scope(session: Session, patient_id: int, departments: list[str] | None) -> bool:
    """Whether a department in ``departments`` has treated this patient (an encounter), has a
    journey or a ticket for them."""
    if departments is None:
        return True
    if not departments:
        return False
    encounter = session.exec(
        select(Encounter.id).where(
            Encounter.patient_id == patient_id, col(Encounter.department_code).in_(departments)
        )
    ).first()
    if encounter is not None:
        return True
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
