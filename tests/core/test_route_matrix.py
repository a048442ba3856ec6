"""The whole route × role matrix (issue 19): every route of the OpenAPI spec, called with a
token of every kind, answers as the table in docs/security.md ("Who may call what") says.

The table is parsed, so the doc and the code cannot drift: a new route without a row, a row
for a route that is gone, or a cell the code does not honour fails here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.api.security import PUBLIC_ROUTES
from suifang.core.config import Settings
from suifang.core.db import utcnow
from suifang.core.models import ApiToken, StaffUser, SurveyInvitation, Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, Scope, issue_token
from suifang.workflows.intake import DischargeIn, register_discharge
from tests.core.test_integrator_scopes import BASE, account, bearer, discharge, settle

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
SECTION = "## Who may call what"
SCOPED, UNSCOPED = "integrator (scoped)", "integrator (unscoped)"
STAFF = {"doctor": Role.DOCTOR, "nurse": Role.NURSE, "agent": Role.AGENT}
COLUMNS = (
    "admin", "auditor", "doctor", "nurse", "agent", SCOPED, UNSCOPED, "no token", "expired token",
)  # fmt: skip
_CELL = re.compile(r"public|401|✗|own department|✓(?P<scopes>( `\w+`)+)?(?P<own>, own department)?")
_ROUTE = re.compile(r"`(?P<method>[A-Z]+) (?P<path>/\S*)`")
#: Path parameters that name the world's cardiology records: another department gets 404.
_OWNED = ("{enrollment_id}", "{ticket_id}", "{patient_id}", "{department}", "{resource_id}")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of the table: what a kind of caller gets from a route."""

    text: str
    scopes: frozenset[Scope]
    own_department: bool

    @classmethod
    def parse(cls, text: str) -> Cell:
        match = _CELL.fullmatch(text)
        if match is None:
            raise ValueError(
                f"{text!r}: a cell is ✓, ✗, 401, public, own department, "
                "or ✓ `scope`[, own department]"
            )
        scopes = re.findall(r"`(\w+)`", match["scopes"] or "")
        return cls(
            text=text,
            scopes=frozenset(Scope(s) for s in scopes),
            own_department=text == "own department" or bool(match["own"]),
        )

    @property
    def public(self) -> bool:
        return self.text == "public"

    @property
    def needs_token(self) -> bool:
        return self.text == "401"

    @property
    def denied(self) -> bool:
        return self.text == "✗"


Matrix = dict[tuple[str, str], dict[str, Cell]]


def read_matrix(document: str) -> Matrix:
    """The table under "Who may call what": (method, path) → column → cell."""
    assert SECTION in document, f"docs/security.md has no {SECTION!r} section"
    section = document.split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("| route |")]
    assert len(starts) == 1, "the section needs one table whose first column is 'route'"
    table = []
    for line in lines[starts[0] :]:
        if not line.startswith("|"):
            break  # the table ends at its first line that is not a row
        table.append(line)

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    assert cells(table[0]) == ["route", *COLUMNS], cells(table[0])
    assert set(table[1].replace("|", "").strip()) <= set("-: "), "no separator under the header"
    matrix: Matrix = {}
    for line in table[2:]:
        route, *rest = cells(line)
        match = _ROUTE.fullmatch(route)
        assert match is not None, f"{route!r}: a route is `METHOD /path`"
        key = (match["method"], match["path"])
        assert key not in matrix, f"{route} has two rows"
        assert len(rest) == len(COLUMNS), f"{route}: {len(rest)} cells, not {len(COLUMNS)}"
        matrix[key] = dict(zip(COLUMNS, map(Cell.parse, rest), strict=True))
    return matrix


def openapi_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_the_table_has_exactly_one_row_per_route_of_the_openapi_spec(settings: Settings) -> None:
    matrix = read_matrix(DOC.read_text(encoding="utf-8"))
    routes = openapi_routes(create_app(settings=settings))
    assert sorted(routes - matrix.keys()) == [], "routes without a row in docs/security.md"
    assert sorted(matrix.keys() - routes) == [], "rows in docs/security.md for no route"
    for (method, path), row in matrix.items():
        public = {column for column, cell in row.items() if cell.public}
        assert public in (set(), set(COLUMNS)), f"{method} {path}: public for some callers only"
        assert bool(public) == (path in PUBLIC_ROUTES), (
            f"{method} {path}: public is {path in PUBLIC_ROUTES}"
        )
        if not public:
            assert row["no token"].needs_token, f"{method} {path}: no token must be 401"
            assert row["expired token"].needs_token, f"{method} {path}: expired must be 401"
        scoped = row[SCOPED]
        if scoped.scopes:
            assert not row[UNSCOPED].denied, f"{method} {path}: scoped allowed, unscoped not"


def test_a_cell_the_table_cannot_mean_is_refused() -> None:
    for typo in ("ok", "✓ intake", "✓ `everything`", "own dept", "403"):
        with pytest.raises(ValueError):  # noqa: PT011 -- a bad scope name is a ValueError too
            Cell.parse(typo)
    cell = Cell.parse("✓ `answers`, own department")
    assert (cell.scopes, cell.own_department) == (frozenset({Scope.ANSWERS}), True)


@dataclasses.dataclass
class Callers:
    """A token of every kind, in cardiology; and the same kinds in orthopaedics."""

    by_column: dict[str, str]
    only_scope: dict[Scope, str]
    """A cardiology integrator token holding just this scope."""
    orthopaedics: dict[str, str]
    """Staff of another department, by role name; and scoped integrator tokens, by scope."""


def _token(runtime: Runtime, user_id: int, **limits: Any) -> tuple[str, int]:
    with Session(runtime.engine) as session:
        user = session.get(StaffUser, user_id)
        assert user is not None
        value, record = issue_token(session, user, name="matrix", **limits)
        return value, record.id  # type: ignore[return-value]


@pytest.fixture
async def world(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> AsyncIterator[dict[str, Any]]:
    """A cardiology journey and ticket, a token of every kind, and an account to spare."""
    now = await journey_worker.get_current_time()
    enrolled = await register_discharge(
        runtime, DischargeIn.model_validate(discharge("MATRIX-1", "cardiology", "pci", now))
    )

    def token(username: str, role: Role, departments: list[str] | None = None) -> str:
        return _token(runtime, account(runtime, username, role, departments))[0]

    def integrator(username: str, departments: list[str] | None, **limits: Any) -> str:
        user_id = account(runtime, username, Role.INTEGRATOR)
        return _token(runtime, user_id, departments=departments, **limits)[0]

    expired, expired_id = _token(runtime, account(runtime, "old", Role.ADMIN))
    with Session(runtime.engine) as session:
        # Expired by its date (not revoked): made valid, then its time ran out.
        record = session.get(ApiToken, expired_id)
        assert record is not None
        record.expires_at = utcnow() - dt.timedelta(seconds=1)
        session.add(record)
        session.commit()
    callers = Callers(
        by_column={
            "admin": token("root", Role.ADMIN),
            "auditor": token("audit", Role.AUDITOR),
            **{name: token(f"{name}.card", role, ["cardiology"]) for name, role in STAFF.items()},
            SCOPED: integrator("feed.all", ["cardiology"], scopes=list(Scope)),
            UNSCOPED: integrator("feed.wide", None, unscoped=True),
            "expired token": expired,
        },
        only_scope={s: integrator(f"feed.{s.value}", ["cardiology"], scopes=[s]) for s in Scope},
        orthopaedics={
            **{name: token(f"{name}.bone", role, ["orthopaedics"]) for name, role in STAFF.items()},
            **{s.value: integrator(f"bone.{s.value}", ["orthopaedics"], scopes=[s]) for s in Scope},
        },
    )
    spare_user = account(runtime, "spare", Role.NURSE, ["cardiology"])
    _, spare_token = _token(runtime, spare_user)
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        opened = await client.post(
            "/tickets",
            json={
                "patient_id": enrolled.patient_id,
                "text": "复查要空腹吗",
                "enrollment_id": enrolled.enrollment_id,
                "department": "cardiology",
            },
            headers=bearer(callers.by_column["admin"]),
        )
        assert opened.status_code == 201, opened.text
        ticket_id = opened.json()["id"]

        def routed() -> bool:
            with Session(runtime.engine) as session:
                ticket = session.get(Ticket, ticket_id)
                return ticket is not None and ticket.department_code == "cardiology"

        await settle(routed)
        today = utcnow().date()
        surveyed = await client.post(
            "/surveys/campaigns",
            json={
                "name": "matrix",
                # The discharge is dated by the test server's clock, which a long session
                # moves years on: the campaign's period reaches far either side.
                "discharged_from": (today - dt.timedelta(days=3650)).isoformat(),
                "discharged_to": (today + dt.timedelta(days=36500)).isoformat(),
                "channels": ["outbox"],
            },
            headers=bearer(callers.by_column["admin"]),
        )
        assert surveyed.status_code == 201, surveyed.text

        def invited() -> int | None:
            with Session(runtime.engine) as session:
                return session.exec(select(SurveyInvitation.id)).first()

        invitation_id = await settle(invited)
        yield {
            "app": app,
            "client": client,
            "callers": callers,
            "values": {
                "enrollment_id": enrolled.enrollment_id,
                "ticket_id": ticket_id,
                "patient_id": enrolled.patient_id,
                "department": "cardiology",
                "user_id": spare_user,
                "token_id": spare_token,
                "contact_id": 1,
                "pathway_id": "pci",
                "version": 1,
                "action": "pause",
                "category": "parking",
                "message_id": 1,
                "resource_type": "CarePlan",
                "resource_id": enrolled.enrollment_id,
                "his_code": "XNK",
                "name": "sms",
                "campaign_id": surveyed.json()["id"],
                "invitation_id": invitation_id,
            },
        }


#: Bodies valid enough to reach a route's department check (a 422 would answer first).
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/journeys/{enrollment_id}/observations"): {
        "observations": [{"indicator": "pain_score", "value": 1}]
    },
    ("POST", "/tickets/{ticket_id}/actions"): {"action": "note", "text": "matrix"},
    ("POST", "/surveys/invitations/{invitation_id}/answers"): {"answers": {"overall": 5}},
    ("POST", "/tickets/{ticket_id}/patient-events"): {"kind": "reply", "text": "好的"},
    ("POST", "/patients/{patient_id}/do-not-contact"): {"source": "matrix"},
    ("POST", "/patients/{patient_id}/contacts"): {"system": "phone", "value": "13700000000"},
}


def _answer(response: httpx.Response) -> str:
    """401 (the token guard's, with its challenge), 403, or "through" for anything else."""
    if response.status_code == 401 and response.headers.get("WWW-Authenticate") == "Bearer":
        return "401"
    if response.status_code == 403:
        return "403"
    return "through"


async def test_every_route_answers_every_kind_of_caller_as_docs_security_md_says(
    world: dict[str, Any],
) -> None:
    matrix = read_matrix(DOC.read_text(encoding="utf-8"))
    client: httpx.AsyncClient = world["client"]
    callers: Callers = world["callers"]
    values: dict[str, Any] = world["values"]
    routes = openapi_routes(world["app"])
    assert routes == matrix.keys()  # the other test says which differ
    wrong: list[str] = []
    calls = 0

    async def call(
        method: str, path: str, token: str | None, body: dict[str, Any]
    ) -> httpx.Response:
        url = re.sub(r"\{(\w+)\}", lambda m: str(values[m[1]]), path)
        headers = bearer(token) if token else {}
        return await client.request(
            method, url, headers=headers, json=None if method == "GET" else body
        )

    async def expect(
        what: str, method: str, path: str, token: str | None, wanted: str, body: dict[str, Any]
    ) -> None:
        nonlocal calls
        calls += 1
        response = await call(method, path, token, body)
        got, status = _answer(response), response.status_code
        honoured = {
            "401": got == "401",
            "403": got == "403",
            "through": got == "through",
            "404": status == 404,  # hidden: another department's record
            "found": got == "through" and status != 404,  # not hidden
        }[wanted]
        if not honoured:
            wrong.append(f"{method} {path} as {what}: {status}, the table says {wanted}")

    # Calls that change things (pause, deactivate, revoke) come last, after every read.
    for method, path in sorted(routes, key=lambda r: (r[0] != "GET", r[1])):
        row = matrix[(method, path)]
        if row["admin"].public:
            response = await call(method, path, None, {})
            if response.headers.get("WWW-Authenticate") == "Bearer":
                wrong.append(f"{method} {path} is public in the table but asks for a token")
            continue
        for column, cell in row.items():
            if column == SCOPED:
                continue
            token = None if column == "no token" else callers.by_column[column]
            wanted = "401" if cell.needs_token else "403" if cell.denied else "through"
            await expect(column, method, path, token, wanted, {})
        scoped = row[SCOPED]
        if scoped.denied:
            await expect(
                "integrator (all scopes)", method, path, callers.by_column[SCOPED], "403", {}
            )
        else:
            for scope, token in callers.only_scope.items():
                permitted = not scoped.scopes or scope in scoped.scopes
                wanted = "through" if permitted else "403"
                await expect(f"integrator ({scope.value} only)", method, path, token, wanted, {})
        # "own department": the same kind of caller from orthopaedics finds nothing there;
        # a plain ✓ for staff or a scoped feed means it does.
        if not any(owned in path for owned in _OWNED):
            continue
        body = VALID_BODIES.get((method, path), {})
        for column, cell in row.items():
            if column not in (*STAFF, SCOPED) or cell.denied:
                continue
            others = (
                [callers.orthopaedics[s.value] for s in cell.scopes or Scope]
                if column == SCOPED
                else [callers.orthopaedics[column]]
            )
            wanted = "404" if cell.own_department else "found"
            for token in others:
                await expect(f"{column} of orthopaedics", method, path, token, wanted, body)
    assert calls > 400  # every route, every kind of caller: the loop really ran
    assert wrong == [], "\n".join(wrong)
