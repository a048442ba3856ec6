"""Hostile input: whatever arrives, the answer is a result or a clear 4xx — never a crash or a 5xx.

- Pathway templates and SLA policies: random mutations of the shipped files and arbitrary text
  either load or are refused with ``file:line: field: reason``.
- SLA calendars and deadlines on random calendars: never before the start, monotone in the
  duration, pauses only add time, a deadline lands in working time.
- Intake: arbitrary JSON and mutated discharges → 2xx or a 4xx that says what is wrong.
- schemathesis over every route of the OpenAPI schema with an admin token: zero 5xx.
- Bodies that are too large, not JSON, not UTF-8 (GBK), malformed, or carry text no database
  stores are refused at the door; Chinese and emoji text is accepted and stored intact.

The example counts are sized for CI; ``SUIFANG_FUZZ_SCALE=20`` (say) multiplies all of them
for a long run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import os
import re
import sys
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import schemathesis
import tzdata
import yaml
from fastapi import Depends, Request
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from sqlalchemy import text
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.api.limits import BodyRefused, load_json_body
from suifang.core.api.security import audit_patients, require
from suifang.core.cli import main as cli_main
from suifang.core.cli.context import cli_runtime
from suifang.core.config import get_settings
from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.models import (
    ApiToken,
    AuditLog,
    Encounter,
    InboundRecord,
    Patient,
    StaffUser,
    Ticket,
    WebhookRejection,
)
from suifang.core.pathways import load_template, resolve_plan
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Permission, Role, create_user, issue_token
from suifang.core.timezones import known_timezones
from suifang.tickets.calendar import BusinessCalendar
from suifang.tickets.oncall import RosterFile
from suifang.tickets.sla import DEFAULT_POLICY_FILE, SlaClock, deadline, load_policy
from suifang.workflows.journey_core import preview_schedule

SCALE = float(os.environ.get("SUIFANG_FUZZ_SCALE", "1"))
ROOT = Path(__file__).parents[2]
PATHWAY_FILES = sorted((ROOT / "templates" / "pathways").glob("*.yaml"))
MIXED_TEXT = "王芳👩‍⚕️术后第3天🙂，伤口有点痒😣——还好吗？𠮷野家 ok 🇨🇳"


def examples(count: int) -> int:
    return max(1, round(count * SCALE))


def fuzz_settings(count: int) -> Any:
    return settings(
        max_examples=examples(count),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # The explain phase traces every line executed: minutes on a YAML parse of a template.
        phases=[phase for phase in Phase if phase is not Phase.explain],
    )


# --------------------------------------------------------------------------- YAML files

HOSTILE_SCALARS = [
    "",
    "~",
    "-1",
    "0",
    "1e999",
    "99999999999d",
    "2026-02-30",
    "!!timestamp not-a-date",
    "!!int nope",
    "!!float nope",
    "!!binary '@@@'",
    "!!python/object:os.system 'true'",
    "[",
    "{",
    "]",
    "'unterminated",
    "&anchor",
    "*missing",
    "10:00",
    "25:61",
    "24:00",
    "{{ broken",
    "{% if %}",
    "mon-sun",
    "sun-mon",
    "\t",
    "---",
    "...",
    MIXED_TEXT,
    "x" * 300,
    "[" * 400 + "]" * 400,
]


def _mutate_lines(text: str, data: st.DataObject) -> str:
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        index = data.draw(st.integers(0, len(lines) - 1))
        kind = data.draw(
            st.sampled_from(["delete", "duplicate", "value", "indent", "insert", "truncate"])
        )
        line = lines[index]
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, line)
        elif kind == "value":
            head, colon, _ = line.partition(": ")
            scalar = data.draw(st.sampled_from(HOSTILE_SCALARS) | st.text(max_size=20))
            lines[index] = f"{head}: {scalar}" if colon else f"{line[: len(line) // 2]}{scalar}"
        elif kind == "indent":
            lines[index] = " " * data.draw(st.integers(0, 7)) + line.lstrip()
        elif kind == "insert":
            lines.insert(index, data.draw(st.text(max_size=40)).replace("\n", " "))
        else:
            lines = lines[:index]
    return "\n".join(lines) + "\n"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE_SCALARS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutate_structure(document: Any, data: st.DataObject) -> Any:
    """Replace, delete or add a value somewhere in the document's tree."""
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        node = document
        for _ in range(data.draw(st.integers(0, 6))):
            children = (
                list(node)
                if isinstance(node, dict)
                else list(range(len(node)))
                if isinstance(node, list)
                else []
            )
            children = [c for c in children if isinstance(node[c], dict | list)]
            if not children:
                break
            node = node[data.draw(st.sampled_from(children))]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            continue
        key = data.draw(st.sampled_from(keys))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = data.draw(json_values)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[data.draw(st.text(min_size=1, max_size=12))] = data.draw(json_values)
        else:
            node.append(data.draw(json_values))
    return document


def refusal_is_located(message: str, path: Path, kind: str) -> None:
    """A refusal names the file and line of every problem, and the field where there is one."""
    assert "Traceback" not in message
    assert "object has no attribute" not in message
    where = re.escape(str(path))
    if message.startswith(f"invalid {kind}\n"):
        problems = message.splitlines()[1:]
        assert problems, message
        for problem in problems:
            assert re.match(rf"^  {where}:\d+: \S.*: \S", problem), message
    else:
        assert re.match(rf"^{where}:\d+: \S", message), message


def template_outcome(path: Path) -> None:
    """Loads into a template whose plan resolves and previews for every tier — or a refusal."""
    try:
        template = load_template(path)
    except ValidationFailed as exc:
        refusal_is_located(str(exc), path, "pathway template")
        return
    start = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
    for tier in RiskTier:
        plan = resolve_plan(template, tier, ["elderly", "child", "pregnant"])
        preview_schedule(plan, start, limit=10)


TEMPLATE_TEXTS = [p.read_text("utf-8") for p in PATHWAY_FILES]
TEMPLATE_DATA = [yaml.safe_load(text) for text in TEMPLATE_TEXTS]
POLICY_TEXT = DEFAULT_POLICY_FILE.read_text("utf-8")


@fuzz_settings(150)
@given(data=st.data())
def test_a_mutated_pathway_template_loads_or_is_refused_naming_file_line_and_field(
    data: st.DataObject, tmp_path: Path
) -> None:
    path = tmp_path / "mutated.yaml"
    path.write_text(_mutate_lines(data.draw(st.sampled_from(TEMPLATE_TEXTS)), data), "utf-8")
    template_outcome(path)


@fuzz_settings(80)
@given(data=st.data())
def test_a_template_with_wrong_values_anywhere_is_refused_naming_the_field(
    data: st.DataObject, tmp_path: Path
) -> None:
    document = _mutate_structure(data.draw(st.sampled_from(TEMPLATE_DATA)), data)
    path = tmp_path / "structured.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    template_outcome(path)


@fuzz_settings(100)
@given(text=st.text(max_size=300) | st.sampled_from(HOSTILE_SCALARS))
def test_arbitrary_text_as_a_template_is_refused_with_a_line(text: str, tmp_path: Path) -> None:
    path = tmp_path / "arbitrary.yaml"
    path.write_text(text, "utf-8", errors="surrogatepass")
    with pytest.raises(ValidationFailed) as refused:
        load_template(path)
    message = str(refused.value)
    if message.startswith(f"{path}: cannot read"):
        return  # a lone surrogate made the file invalid UTF-8
    refusal_is_located(message, path, "pathway template")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: demo\nversion: 2026-02-30\n", r":2: not valid YAML: cannot read '2026-02-30'"),
        ("id: !!timestamp yesterday\n", r":1: not valid YAML: cannot read 'yesterday' as a time"),
        ("id: " + "[" * 500 + "]" * 500 + "\n", r":1: not valid YAML: nested too deeply"),
        ("answer_wait: 99999999999d\n", r"answer_wait: '99999999999d' is too long a duration"),
    ],
)
def test_values_yaml_itself_cannot_build_are_refused_with_their_line(
    text: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    if "answer_wait" in text:  # the template's own answer_wait, made absurd
        text = re.sub(r"(?m)^answer_wait: .*\n", text, TEMPLATE_TEXTS[0], count=1)
    path.write_text(text, "utf-8")
    with pytest.raises(ValidationFailed, match=expected):
        load_template(path)
    with pytest.raises(ValidationFailed):
        load_policy(path)


@fuzz_settings(80)
@given(data=st.data())
def test_a_mutated_sla_policy_loads_or_is_refused_naming_file_line_and_field(
    data: st.DataObject, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    if data.draw(st.booleans()):
        text = _mutate_lines(POLICY_TEXT, data)
    else:
        document = _mutate_structure(yaml.safe_load(POLICY_TEXT), data)
        text = yaml.safe_dump(document, allow_unicode=True)
    path.write_text(text, "utf-8")
    try:
        load_policy(path)
    except ValidationFailed as exc:
        refusal_is_located(str(exc), path, "SLA policy")


# --------------------------------------------------------------------------- SLA calendars

ZONES = [
    "Asia/Shanghai",
    "America/New_York",  # daylight saving at 02:00
    "Australia/Lord_Howe",  # a 30-minute daylight-saving shift
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45 / +13:45
    "UTC",
]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@st.composite
def day_hours(draw: st.DrawFn) -> list[str]:
    """A day's intervals: ordered, non-overlapping, at least 15 minutes, on any minute."""
    cuts = sorted(draw(st.sets(st.integers(0, 24 * 4), min_size=2, max_size=6)))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    intervals = []
    for start, end in zip(cuts[::2], cuts[1::2], strict=True):
        start_minute = start * 15 + draw(st.integers(0, 14)) if start < 96 else start * 15
        end_minute = end * 15
        if end_minute - start_minute < 15:
            continue
        intervals.append(f"{start_minute // 60:02d}:{start_minute % 60:02d}-{_clock(end_minute)}")
    return intervals


def _clock(minute: int) -> str:
    return "24:00" if minute == 24 * 60 else f"{minute // 60:02d}:{minute % 60:02d}"


dates = st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2027, 12, 31))


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    if draw(st.integers(0, 9)) == 0:
        return BusinessCalendar(
            name="always", timezone=draw(st.sampled_from(ZONES)), always_open=True
        )
    hours = {day: draw(day_hours()) for day in draw(st.sets(st.sampled_from(WEEKDAYS), min_size=1))}
    hours = {day: intervals for day, intervals in hours.items() if intervals}
    if not hours:
        hours = {"wed": ["09:00-09:15"]}
    holidays = draw(st.sets(dates, max_size=30))
    workdays = draw(st.sets(dates, max_size=8)) - holidays
    return BusinessCalendar(
        name="random",
        timezone=draw(st.sampled_from(ZONES)),
        hours=hours,
        holidays=holidays,
        extra_workdays=workdays,
        extra_workday_schedule=draw(st.sampled_from(sorted(hours))),
    )


starts = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2027, 6, 30), timezones=st.just(dt.UTC)
)
working_times = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(hours=30))
pause_lists = st.lists(
    st.tuples(
        st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=20)),
        st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=5)),
    ),
    max_size=4,
)
MICROSECOND = dt.timedelta(microseconds=1)


@fuzz_settings(120)
@given(calendar=calendars(), start=starts, a=working_times, b=working_times)
def test_a_deadline_is_never_before_its_start_and_grows_with_the_duration(
    calendar: BusinessCalendar, start: dt.datetime, a: dt.timedelta, b: dt.timedelta
) -> None:
    shorter, longer = sorted((a, b))
    early, late = deadline(start, shorter, calendar), deadline(start, longer, calendar)
    assert start <= early <= late
    if longer > shorter:
        assert late > early
    assert calendar.working_time_between(start, late) == longer


@fuzz_settings(120)
@given(calendar=calendars(), start=starts, duration=working_times)
def test_a_deadline_lands_in_working_time(
    calendar: BusinessCalendar, start: dt.datetime, duration: dt.timedelta
) -> None:
    due = deadline(start, duration, calendar)
    if duration:
        assert calendar.is_working(due - MICROSECOND)
    else:
        assert calendar.is_working(due)
        assert due == calendar.next_working_instant(start)


@fuzz_settings(120)
@given(calendar=calendars(), start=starts, duration=working_times, pauses=pause_lists)
def test_pauses_only_add_time_and_the_paused_time_is_not_counted(
    calendar: BusinessCalendar,
    start: dt.datetime,
    duration: dt.timedelta,
    pauses: list[tuple[dt.timedelta, dt.timedelta]],
) -> None:
    windows = [(start + offset, start + offset + length) for offset, length in pauses]
    unpaused = deadline(start, duration, calendar)
    paused = deadline(start, duration, calendar, windows)
    assert paused >= unpaused >= start
    # The same pauses on a clock (closed one after another) count exactly the target.
    clock = SlaClock(started_at=start, target=duration, calendar=calendar)
    for begin, end in sorted(windows):
        last = clock.pauses[-1].end if clock.pauses else start
        if begin >= last:
            clock = clock.pause(begin).resume(end)
    due = clock.due_at()
    assert due is not None
    assert due >= unpaused
    assert clock.elapsed(due) == duration
    if duration:
        assert clock.elapsed(due - MICROSECOND) < duration


calendar_specs = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=8) | json_values,
        "timezone": st.sampled_from([*ZONES, "", "Nowhere/Land", "../../etc/passwd", "UTC\x00"])
        | json_values,
        "hours": st.dictionaries(
            st.sampled_from([*WEEKDAYS, "mon-fri", "fri-mon", "sat-sun", "noday", ""]),
            st.lists(
                st.sampled_from(
                    ["08:00-12:00", "13:30-17:30", "12:00-08:00", "24:00-25:00", "9-17", "x"]
                )
                | json_values,
                max_size=3,
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "holidays": st.lists(dates | json_values, max_size=3) | json_values,
        "extra_workdays": st.lists(dates | json_values, max_size=3) | json_values,
        "extra_workday_schedule": st.sampled_from(WEEKDAYS) | json_values,
        "always_open": st.booleans() | json_values,
        "utc_offsets": json_values,
    },
)


@fuzz_settings(200)
@given(spec=calendar_specs)
def test_any_calendar_definition_builds_or_is_refused_with_a_validation_error(
    spec: dict[str, Any],
) -> None:
    try:
        calendar = BusinessCalendar.model_validate(spec)
    except ValidationError:
        return
    start = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    assert deadline(start, dt.timedelta(hours=4), calendar) >= start


# --------------------------------------------------------------------------- the API


@dataclass
class Api:
    runtime: Runtime
    client: httpx.AsyncClient
    token: str
    user_id: int
    token_id: int
    enrollment_id: int
    patient_id: int
    ticket_id: int
    env: WorkflowEnvironment
    app: Any = None
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def from_thread(self) -> Callable[..., httpx.Response]:
        """A blocking ``request(**kwargs)`` for hypothesis, which runs in a worker thread while
        the event loop keeps serving the app and the Temporal worker."""
        loop = asyncio.get_running_loop()

        def request(**kwargs: Any) -> httpx.Response:
            future = asyncio.run_coroutine_threadsafe(self.client.request(**kwargs), loop)
            return future.result(timeout=60)

        return request


def discharge(number: int, discharged_at: dt.datetime, **patient: Any) -> dict[str, Any]:
    return {
        "pathway": "pci",
        "patient": {
            "external_id": f"H-{number}",
            "name": "欧阳娜娜",
            "phone": "13912345678",
            "preferred_channels": ["outbox"],
            **patient,
        },
        "encounter": {
            "external_id": f"HV-{number}",
            "department": "cardiology",
            "discharged_at": discharged_at.isoformat(),
        },
    }


@pytest.fixture
async def api(runtime: Runtime, journey_worker: WorkflowEnvironment) -> AsyncIterator[Api]:
    """The app on a seeded database (a journey, a ticket) with an admin token."""
    with Session(runtime.engine) as session:
        user = create_user(session, username="root", display_name="root", role=Role.ADMIN)
        token, record = issue_token(session, user, name="hostile")
        user_id, token_id = user.id, record.id
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://suifang.test") as client:
        headers = {"Authorization": f"Bearer {token}"}
        now = await journey_worker.get_current_time()
        enrolled = await client.post("/intake/discharges", json=discharge(0, now), headers=headers)
        assert enrolled.status_code == 201, enrolled.text
        patient_id = enrolled.json()["patient_id"]
        ticket = await client.post(
            "/tickets", json={"patient_id": patient_id, "text": "药吃完了怎么办"}, headers=headers
        )
        assert ticket.status_code == 201, ticket.text
        yield Api(
            runtime=runtime,
            client=client,
            token=token,
            user_id=user_id,  # type: ignore[arg-type]
            token_id=token_id,  # type: ignore[arg-type]
            enrollment_id=enrolled.json()["enrollment_id"],
            patient_id=patient_id,
            ticket_id=ticket.json()["id"],
            env=journey_worker,
            app=app,
        )


def assert_clear_answer(response: httpx.Response) -> None:
    """2xx, or a 4xx whose JSON body says what is wrong — never a 5xx."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"]
        assert error["message"].strip()


sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# ------------------------------------------------------------------ bodies refused at the door


@dataclass
class Door:
    runtime: Runtime
    app: Any
    client: httpx.AsyncClient
    auth: dict[str, str]

    async def post(self, path: str, content: Any, content_type: str) -> httpx.Response:
        headers = {**self.auth, "content-type": content_type}
        return await self.client.post(path, content=content, headers=headers)


@pytest.fixture
async def door(runtime: Runtime) -> AsyncIterator[Door]:
    """The app with an admin token and no Temporal: refusals happen before any route runs."""
    with Session(runtime.engine) as session:
        user = create_user(session, username="root", display_name="root", role=Role.ADMIN)
        token, _ = issue_token(session, user, name="door")
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://suifang.test") as client:
        yield Door(runtime, app, client, {"Authorization": f"Bearer {token}"})


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]["message"]


JSON = "application/json"
GBK_JSON = '{"patient_id": 1, "text": "胸口痛"}'.encode("gbk")
BAD_BODIES = [
    ("form", b"patient_id=1&text=hi", "application/x-www-form-urlencoded", 415, "must be JSON"),
    ("plain text", b"hello", "text/plain", 415, "not 'text/plain'"),
    ("GBK, declared", GBK_JSON, f"{JSON}; charset=gbk", 415, "only UTF-8 JSON is accepted"),
    ("GBK, undeclared", GBK_JSON, JSON, 400, "not UTF-8: byte 0xD0 at offset 27"),
    ("invalid bytes", b'{"text": "\xff\xfe"}', JSON, 400, "byte 0xFF at offset 10"),
    ("trailing comma", b'{"patient_id": 1, "text": "x",}', JSON, 400, "line 1, column 31"),
    ("missing value", b'{"patient_id": 1,\n "text": }', JSON, 400, "line 2, column 10"),
    ("NaN", b'{"patient_id": NaN, "text": "x"}', JSON, 400, "NaN is not valid JSON"),
    ("5000 digits", b'{"patient_id": 1' + b"0" * 5000 + b"}", JSON, 400, "unreadable JSON"),
    ("deep nesting", b"[" * 100_000, JSON, 400, "nested deeper than 32 levels"),
    (
        "NUL",
        b'{"patient_id": 1, "text": "a\\u0000b"}',
        JSON,
        422,
        "body.text: the text contains a NUL",
    ),
    (
        "lone surrogate",
        b'{"patient_id": 1, "text": "\\ud83d alone"}',
        JSON,
        422,
        "body.text: the text contains an unpaired UTF-16 surrogate (\\ud83d)",
    ),
    ("NUL in a key", b'{"patient_id": 1, "\\u0000": 1}', JSON, 422, "the key contains a NUL"),
    (
        "beyond 64 bits",
        b'{"patient_id": 1000000000000000000000, "text": "x"}',
        JSON,
        422,
        "body.patient_id: the integer is out of range",
    ),
]


@sqlite_only
async def test_a_body_that_is_not_json_not_utf8_or_not_storable_gets_a_clear_4xx(
    door: Door,
) -> None:
    for name, content, content_type, status, message in BAD_BODIES:
        response = await door.post("/tickets", content, content_type)
        assert response.status_code == status, (name, response.text)
        assert message in error_of(response), name


# ------------------------------------------------------------------ 5xx: clean and audited


Auditor = Annotated[Any, Depends(require(Permission.AUDIT_READ))]


def audit_rows(runtime: Runtime, status_code: int) -> list[AuditLog]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(AuditLog).where(AuditLog.status_code == status_code)))


def assert_quotes_an_error_id(response: httpx.Response) -> str:
    """The 5xx says nothing of what went wrong inside, and gives an id to quote instead."""
    error = response.json()["error"]
    assert error["error_id"] == response.headers["x-error-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", error["error_id"])
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return error["error_id"]


async def test_a_bug_is_a_clean_500_with_an_error_id_and_is_audited(
    door: Door, caplog: pytest.LogCaptureFixture
) -> None:
    """A route that crashes (a bug, simulated by a route that raises) once left Starlette's
    plain-text 500 and no audit record: the request was missing from the audit log."""

    def crash(thing_id: int, request: Request, _: Auditor) -> None:
        audit_patients(request, 7)  # it had read a patient's data before it crashed
        raise RuntimeError(f"internal state of thing {thing_id}: 13912345678")

    door.app.add_api_route("/things/{thing_id}", crash, methods=["GET"])
    response = await door.client.get(
        "/things/5", headers={**door.auth, "X-Request-ID": "req-crash-1"}
    )
    assert response.status_code == 500
    error_id = assert_quotes_an_error_id(response)
    assert response.json()["error"]["code"] == "internal_error"
    assert f"quote error id {error_id}" in error_of(response)
    assert "13912345678" not in response.text
    assert "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == "req-crash-1"

    (record,) = audit_rows(door.runtime, 500)
    assert (record.actor, record.role, record.action) == ("root", "admin", "GET /things/{thing_id}")
    assert (record.outcome, record.request_id, record.patient_id) == ("error", "req-crash-1", 7)
    assert record.detail == {"error_id": error_id, "error": "RuntimeError"}
    assert record.resource_id is None  # never the path's text
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None  # the traceback is in the server log

    # Before anyone is authenticated (a public route, as the webhooks are): still recorded.
    def crash_in_public(name: str) -> None:
        raise KeyError(name)

    door.app.add_api_route("/open/{name}", crash_in_public, methods=["POST"])
    public = await door.client.post("/open/王芳", json={})
    assert public.status_code == 500
    public_id = assert_quotes_an_error_id(public)
    assert "王芳" not in public.text
    (_, anonymous) = sorted(audit_rows(door.runtime, 500), key=lambda row: row.id or 0)
    assert (anonymous.actor, anonymous.role, anonymous.action) == (
        "anonymous",
        "-",
        "POST /open/{name}",
    )
    assert anonymous.detail == {"error_id": public_id, "error": "KeyError"}
    assert anonymous.resource_id is None


async def test_a_database_failure_is_a_5xx_with_an_error_id_and_is_audited(door: Door) -> None:
    """A real 5xx, not a simulated one: the tickets table is gone (a botched migration)."""
    with door.runtime.engine.begin() as connection:
        connection.execute(text("ALTER TABLE ticket RENAME TO ticket_elsewhere"))
    try:
        response = await door.client.get("/tickets", headers=door.auth)
    finally:
        with door.runtime.engine.begin() as connection:
            connection.execute(text("ALTER TABLE ticket_elsewhere RENAME TO ticket"))
    assert response.status_code >= 500, response.text  # SQLite: 503, PostgreSQL: 500
    error_id = assert_quotes_an_error_id(response)
    assert "ticket_elsewhere" not in response.text
    (record,) = audit_rows(door.runtime, response.status_code)
    assert (record.actor, record.action, record.outcome) == ("root", "GET /tickets", "error")
    assert record.detail == {"error_id": error_id}
    with Session(door.runtime.engine) as session:  # one record for the request, not two
        assert session.exec(select(AuditLog).where(AuditLog.action == "GET /tickets")).all() == [
            record
        ]


# ------------------------------------------------------------------ timezones

HOSTILE_TIMEZONES = [
    ("Asia", "unknown IANA timezone 'Asia'; that is a region, not a zone"),  # a directory
    ("", "String should have at least 1 character"),
    ("../etc/passwd", "unknown IANA timezone '../etc/passwd'"),
    ("UTC/../../x", "unknown IANA timezone 'UTC/../../x'"),
    ("/etc/localtime", "unknown IANA timezone '/etc/localtime'"),
    ("localtime", "unknown IANA timezone 'localtime'"),  # the host's zone, not an IANA name
    ("asia/shanghai", "unknown IANA timezone 'asia/shanghai'"),
    ("Mars/Olympus", "unknown IANA timezone 'Mars/Olympus'"),
    ("A" * 300, "String should have at most 64 characters"),  # once an OSError: file name too long
    ("Asia/" + "x" * 59, "unknown IANA timezone 'Asia/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'…"),
]


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """The paths every ``open`` in this process names while the block runs (PEP 578 hooks)."""
    opened: list[str] = []
    _OPEN_RECORDERS.append(opened)
    try:
        yield opened
    finally:
        _OPEN_RECORDERS.remove(opened)


_OPEN_RECORDERS: list[list[str]] = []


def _record_opens(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPEN_RECORDERS and isinstance(args[0], str | bytes):
        _OPEN_RECORDERS[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)  # for good, as audit hooks are; idle outside files_opened()


def tz_files(opened: list[str]) -> list[str]:
    roots = [*zoneinfo.TZPATH, str(Path(tzdata.__file__).parent)]
    return [path for path in opened if any(path.startswith(root) for root in roots)]


@sqlite_only
async def test_a_timezone_that_is_not_an_iana_zone_gets_422_naming_the_field(door: Door) -> None:
    """Preview and intake once answered "Asia" with an IsADirectoryError 500 and 300 characters
    with an OSError: ``ZoneInfo`` took the name as a path. Now nothing is opened for it."""
    known_timezones()  # the tz database's list of names, read once, as in production
    for timezone, problem in HOSTILE_TIMEZONES:
        with files_opened() as opened:
            preview = await door.client.get(
                "/pathways/pci/preview",
                params={"discharged": "2026-11-01", "timezone": timezone},
                headers=door.auth,
            )
            payload = discharge(1, dt.datetime(2026, 11, 1, tzinfo=dt.UTC), timezone=timezone)
            intake = await door.client.post("/intake/discharges", json=payload, headers=door.auth)
        assert preview.status_code == 422, (timezone, preview.text)
        assert error_of(preview).startswith(f"query.timezone: {problem}"), preview.text
        assert intake.status_code == 422, (timezone, intake.text)
        assert error_of(intake).startswith(f"body.patient.timezone: {problem}"), intake.text
        assert tz_files(opened) == [], (timezone, opened)
        assert not any("passwd" in path for path in opened)

    nul = {**discharge(2, dt.datetime(2026, 11, 1, tzinfo=dt.UTC), timezone="Asia/Sh\x00")}
    refused = await door.client.post("/intake/discharges", json=nul, headers=door.auth)
    assert refused.status_code == 422
    assert error_of(refused).startswith("body.patient.timezone: the text contains a NUL")
    in_url = await door.client.get(
        "/pathways/pci/preview?discharged=2026-11-01&timezone=Asia/Sh%00", headers=door.auth
    )
    assert in_url.status_code == 400
    assert "query string contains a NUL" in error_of(in_url)

    good = await door.client.get(
        "/pathways/pci/preview",
        params={"discharged": "2026-11-01", "timezone": "America/New_York"},
        headers=door.auth,
    )
    assert good.status_code == 200, good.text
    assert good.json()["schedule"][0]["local_time"] == "2026-11-04 10:00"
    with files_opened() as opened:
        zoneinfo.ZoneInfo.no_cache("Pacific/Chatham")
    assert tz_files(opened), "the hook sees a real zone's file being read"
    with Session(door.runtime.engine) as session:
        assert session.exec(select(Patient)).all() == []  # nothing half-registered


TIMEZONE_LIKE = (
    st.sampled_from(sorted(known_timezones()))
    | st.sampled_from(["Asia", "America", "Etc", "right", "posix", "zone.tab", "tzdata.zi"])
    | st.lists(
        st.sampled_from(
            ["Asia", "Shanghai", "..", ".", "", "UTC", "etc", "passwd", "Etc", "GMT+8"]
        ),
        min_size=1,
        max_size=6,
    ).map("/".join)
    | st.text(max_size=80)
)


@sqlite_only
async def test_any_timezone_text_is_a_zone_or_a_422_never_a_5xx(door: Door) -> None:
    """Random names, regions, tz-directory files and path fragments on preview and intake."""
    loop = asyncio.get_running_loop()
    counts = {"zone": 0, "refused": 0}

    def request(**kwargs: Any) -> httpx.Response:
        call = door.client.request(**kwargs, headers=door.auth)
        return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)

    @fuzz_settings(150)
    @given(timezone=TIMEZONE_LIKE)
    def check(timezone: str) -> None:
        if "\x00" in timezone:
            reject()  # a NUL in a URL is refused at the door (400), tested above
        preview = request(
            method="GET",
            url="/pathways/pci/preview",
            params={"discharged": "2026-11-01", "timezone": timezone},
        )
        assert_clear_answer(preview)
        if timezone in known_timezones():
            assert preview.status_code == 200, preview.text
            counts["zone"] += 1
            return
        assert preview.status_code == 422, preview.text
        assert error_of(preview).startswith("query.timezone: "), preview.text
        payload = discharge(1, dt.datetime(2026, 11, 1, tzinfo=dt.UTC), timezone=timezone)
        intake = request(method="POST", url="/intake/discharges", json=payload)
        assert intake.status_code == 422, intake.text
        assert [p["where"] for p in intake.json()["error"]["problems"]] == [
            "body.patient.timezone"
        ], intake.text
        counts["refused"] += 1

    await asyncio.to_thread(check)
    assert counts["zone"] >= 10, counts
    assert counts["refused"] >= 50, counts


def test_a_cli_timezone_that_is_not_an_iana_zone_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUIFANG_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    for timezone in ("Asia", "../etc/passwd", "x" * 300):
        code = cli_main(
            ["pathways", "preview", "pci", "--discharged", "2026-11-01", "--timezone", timezone]
        )
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("suifang: error: --timezone: unknown IANA timezone"), err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("2026-12-04T17:00", "give a timezone, e.g. 2026-11-20T10:00+08:00"),
        ("0001-01-01T00:00+14:00", "must be between 1900-01-01 and 2999-12-31"),
        ("9999-12-31T00:00+00:00", "must be between 1900-01-01 and 2999-12-31"),
    ],
)
def test_every_cli_time_is_checked_like_the_apis(
    when: str,
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One definition of a plausible instant (core/timestamps.py): the on-call and journey
    commands once took year 1 or 9999, which the API refuses."""
    monkeypatch.setenv("SUIFANG_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    for args, option in (
        (["oncall", "show", "cardiology", "--at", when], "--at"),
        (["journeys", "readmitted", "1", "--at", when], "--at"),
        (["journeys", "reschedule", "1", "--next-due", when], "--next-due"),
    ):
        code = cli_main(args)
        err = capsys.readouterr().err
        assert code != 0, err
        assert err.strip() == f"suifang: error: {option}: {problem}", err


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("2026-12-04T17:00:00", "give a timezone"),
        ("0001-01-01T00:00:00+14:00", "must be between 1900-01-01 and 2999-12-31"),
    ],
)
async def test_the_on_call_query_checks_its_time_like_every_other_route(
    door: Door, when: str, problem: str
) -> None:
    response = await door.client.get("/oncall/cardiology", params={"at": when}, headers=door.auth)
    assert response.status_code == 422, response.text
    assert problem in error_of(response), response.text


def test_a_roster_or_calendar_with_a_bad_timezone_is_refused_naming_it() -> None:
    with pytest.raises(
        ValidationError, match="timezone\n  Value error, unknown IANA timezone 'Asia'"
    ):
        RosterFile.model_validate({"timezone": "Asia"})
    with pytest.raises(ValidationError, match=re.escape("unknown IANA timezone 'UTC/../../x'")):
        BusinessCalendar(name="x", timezone="UTC/../../x", always_open=True)


# ------------------------------------------------------------------ token lifetimes

BAD_LIFETIMES: list[tuple[Any, str]] = [
    (1e-300, "1e-300 days is out of bounds"),  # once a token that never expired
    (0, "0 days is out of bounds"),
    (-1, "-1 days is out of bounds"),
    (0.0006, "0.0006 days is out of bounds: a token lives from 1 minute (0.000694)"),
    (366, "366 days is out of bounds: a token lives from 1 minute (0.000694) to 365 days"),
    (1e308, "1e+308 days is out of bounds"),
    (None, "Input should be a valid number"),  # "never expires" is gone
]


@sqlite_only
async def test_a_token_lifetime_out_of_bounds_is_refused_with_422(door: Door) -> None:
    with Session(door.runtime.engine) as session:
        user = create_user(session, username="his", display_name="HIS", role=Role.INTEGRATOR)
        issued_before = len(session.exec(select(ApiToken)).all())
    url = f"/users/{user.id}/tokens"
    for days, problem in BAD_LIFETIMES:
        response = await door.client.post(
            url, json={"name": "feed", "expires_in_days": days}, headers=door.auth
        )
        assert response.status_code == 422, (days, response.text)
        assert error_of(response).startswith(f"body.expires_in_days: {problem}"), response.text
    for literal in (b"1e999", b"-1e999"):  # valid JSON that Python reads as infinity
        response = await door.post(url, b'{"name": "feed", "expires_in_days": %s}' % literal, JSON)
        assert response.status_code == 422, response.text
        assert error_of(response).startswith("body.expires_in_days: Input should be a finite")
    with Session(door.runtime.engine) as session:
        assert len(session.exec(select(ApiToken)).all()) == issued_before

    before = dt.datetime.now(dt.UTC)
    shortest = await door.client.post(
        url, json={"name": "feed", "expires_in_days": 0.0007, "unscoped": True}, headers=door.auth
    )
    assert shortest.status_code == 201, shortest.text
    expires_at = dt.datetime.fromisoformat(shortest.json()["expires_at"])
    assert dt.timedelta(minutes=1) < expires_at - before < dt.timedelta(minutes=2)
    longest = await door.client.post(
        url, json={"name": "feed", "expires_in_days": 365, "unscoped": True}, headers=door.auth
    )
    assert longest.status_code == 201, longest.text
    default = await door.client.post(
        url, json={"name": "feed", "unscoped": True}, headers=door.auth
    )
    assert dt.datetime.fromisoformat(default.json()["expires_at"]) - before > dt.timedelta(89)


@sqlite_only
async def test_the_longest_token_lifetime_is_a_setting(runtime: Runtime) -> None:
    runtime.settings.token_max_lifetime_days = 30
    with Session(runtime.engine) as session:
        user = create_user(session, username="root", display_name="root", role=Role.ADMIN)
        token, _ = issue_token(session, user, name="setting", expires_in=dt.timedelta(days=1))
        user_id = user.id
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        response = await client.post(
            f"/users/{user_id}/tokens",
            json={"name": "x", "expires_in_days": 31},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 422
    assert "to 30 days (SUIFANG_TOKEN_MAX_LIFETIME_DAYS)" in error_of(response)


def test_the_cli_refuses_a_token_lifetime_out_of_bounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUIFANG_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SUIFANG_DATABASE_URL", "")
    get_settings.cache_clear()
    cli_runtime.cache_clear()
    try:
        assert cli_main(["users", "add", "his", "--role", "integrator"]) == 0
        for days in ("1e-300", "0", "-2", "nan", "inf", "400"):
            code = cli_main(["tokens", "create", "his", "--expires-in-days", days])
            err = capsys.readouterr().err
            assert code == 2, (days, err)
            assert err.startswith("suifang: error: --expires-in-days: "), err
        created = ["tokens", "create", "his", "--expires-in-days", "0.5", "--unscoped"]
        assert cli_main(created) == 0
        with Session(cli_runtime().engine) as session:
            (token,) = session.exec(select(ApiToken)).all()
        assert token.expires_at is not None
    finally:
        if cli_runtime.cache_info().currsize:
            cli_runtime().close()
        cli_runtime.cache_clear()
        get_settings.cache_clear()


def nested(depth: int) -> bytes:
    """A body valid in every way but its depth: ``{"text": "x", "extra": [[…[]…]]}``."""
    return b'{"patient_id": 1, "text": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}"


@sqlite_only
async def test_deep_json_is_refused_with_400_on_every_route_that_takes_a_body(door: Door) -> None:
    """5,000 levels once ended in a RecursionError (a 500); 900 passed the parser and went on
    into validation and storage. One guard refuses both before any route runs."""
    with_body = [
        (method.upper(), path)
        for path, item in door.app.openapi()["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
        and "/inbound" not in path
        # A pathway upload is YAML: the catalogue reads it (tests/core/test_pathway_catalogue.py);
        # an HL7 v2 message is ER7 (tests/workflows/test_hl7_intake.py).
        and "application/yaml" not in operation["requestBody"]["content"]
        and "application/hl7-v2" not in operation["requestBody"]["content"]
    ]
    assert ("POST", "/intake/discharges") in with_body
    assert len(with_body) >= 10, with_body
    url_of = {"user_id": 1, "token_id": 1, "his_code": "XNK"}
    for method, path in with_body:
        url = re.sub(r"\{(\w+)\}", lambda m: str(url_of.get(m.group(1), 1)), path)
        for depth in (5000, 900, 32):  # levels below the body's own object
            response = await door.client.request(
                method, url, content=nested(depth), headers={**door.auth, "content-type": JSON}
            )
            assert response.status_code == 400, (method, path, depth, response.text)
            assert error_of(response).startswith("the JSON is nested deeper than 32 levels"), (
                response.text
            )
            assert "SUIFANG_API_MAX_JSON_DEPTH" in error_of(response)
    shallow = await door.post("/tickets", nested(31), JSON)  # 32 levels: the limit itself
    assert shallow.status_code == 404, shallow.text  # through the door, to "no patient 1"
    with Session(door.runtime.engine) as session:
        refused = session.exec(select(AuditLog).where(AuditLog.status_code == 400)).all()
    assert refused == []  # refused at the door: no route ran, nothing was written


def test_code_that_parses_a_body_itself_gets_the_same_depth_limit() -> None:
    """The webhooks parse their own bodies (after storing them): load_json_body is the door's
    check for them, a BodyRefused (400) instead of a RecursionError."""
    deep = b'{"event": "reply", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(BodyRefused) as refused:
        load_json_body(deep)
    assert (refused.value.status_code, refused.value.code) == (400, "json_too_deep")
    assert load_json_body(b'{"event": "reply", "payload": [[1]]}') == {
        "event": "reply",
        "payload": [[1]],
    }


@sqlite_only
async def test_the_json_depth_limit_is_a_setting(runtime: Runtime) -> None:
    runtime.settings.api_max_json_depth = 4
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        response = await client.post("/tickets", content=nested(4), headers={"content-type": JSON})
    assert response.status_code == 400
    assert error_of(response) == (
        "the JSON is nested deeper than 4 levels (at body.extra[0][0][0]; "
        "SUIFANG_API_MAX_JSON_DEPTH)"
    )


@sqlite_only
async def test_an_oversized_body_is_refused_with_413_by_length_and_while_streaming(
    door: Door,
) -> None:
    limit = door.runtime.settings.api_max_body_bytes
    declared = await door.post("/tickets", b"{" + b" " * limit + b"}", JSON)
    assert declared.status_code == 413
    assert f"over the limit of {limit} bytes (SUIFANG_API_MAX_BODY_BYTES)" in error_of(declared)

    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal sent
        for _ in range(64):
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    streamed = await door.post("/tickets", chunks(), JSON)
    assert streamed.status_code == 413
    assert error_of(streamed).startswith("the request body is over the limit of")
    assert sent <= limit + 2 * 64 * 1024  # refused as soon as the limit was passed

    webhook = await door.client.post("/channels/sms/inbound", content=b"x" * (limit + 1))
    assert webhook.status_code == 413


@sqlite_only
async def test_the_body_limit_is_a_setting(runtime: Runtime) -> None:
    runtime.settings.api_max_body_bytes = 2048
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        response = await client.post("/tickets", json={"text": "好" * 1000})
    assert response.status_code == 413
    assert "over the limit of 2048 bytes" in error_of(response)


@sqlite_only
async def test_a_nul_in_the_url_and_a_bogus_content_length_are_refused(door: Door) -> None:
    response = await door.client.get("/journeys?pathway=pci%00", headers=door.auth)
    assert response.status_code == 400
    assert "query string contains a NUL" in error_of(response)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tickets",
        "raw_path": b"/tickets",
        "query_string": b"",
        "headers": [(b"content-length", b"12abc"), (b"content-type", JSON.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("suifang.test", 80),
        "state": {},
    }
    await door.app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b"is not a byte count" in sent[1]["body"]


@sqlite_only
async def test_a_webhook_with_a_gbk_body_is_recorded_and_refused_not_crashed(door: Door) -> None:
    body = "回复1，我很好".encode("gbk")
    channels = ("sms", "webhook", "wechat", "voice", "email", "nope")
    for channel in channels:
        response = await door.client.post(
            f"/channels/{channel}/inbound",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded; charset=gbk"},
        )
        assert 400 <= response.status_code < 500, (channel, response.text)
        assert error_of(response)
    with Session(door.runtime.engine) as session:
        assert session.exec(select(InboundRecord)).all() == []  # refused: no body is kept
        recorded = session.exec(select(WebhookRejection)).all()
    assert sorted(r.channel for r in recorded) == sorted(channels)
    assert {r.size for r in recorded} == {len(body)}


async def test_chinese_and_emoji_in_every_free_text_field_are_stored_intact(api: Api) -> None:
    now = await api.env.get_current_time()
    payload = discharge(1, now, name=MIXED_TEXT[:40], address=MIXED_TEXT)
    payload["encounter"].update(
        ward=MIXED_TEXT[:30],
        diagnosis_text=MIXED_TEXT,
        procedure_text=MIXED_TEXT,
        attending_doctor=MIXED_TEXT[:20],
        discharge_disposition=MIXED_TEXT[:30],
    )
    enrolled = await api.client.post("/intake/discharges", json=payload, headers=api.auth)
    assert enrolled.status_code == 201, enrolled.text
    patient_id = enrolled.json()["patient_id"]
    shown = await api.client.get(f"/patients/{patient_id}", headers=api.auth)
    assert shown.json()["name"] == MIXED_TEXT[:40]
    ticket = await api.client.post(
        "/tickets", json={"patient_id": patient_id, "text": MIXED_TEXT}, headers=api.auth
    )
    assert ticket.status_code == 201, ticket.text
    note = await api.client.post(
        f"/tickets/{ticket.json()['id']}/actions",
        json={"action": "note", "text": MIXED_TEXT},
        headers=api.auth,
    )
    assert note.status_code == 200, note.text
    assert MIXED_TEXT in [n["body"] for n in note.json()["notes"]]
    answered = await api.client.post(
        f"/journeys/{enrolled.json()['enrollment_id']}/answers",
        json={"text": MIXED_TEXT},
        headers=api.auth,
    )
    assert answered.status_code == 202, answered.text
    with Session(api.runtime.engine) as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None
        assert (patient.name, patient.address) == (MIXED_TEXT[:40], MIXED_TEXT)
        encounter = session.exec(select(Encounter).where(Encounter.patient_id == patient_id)).one()
        assert encounter.diagnosis_text == encounter.procedure_text == MIXED_TEXT
        assert encounter.ward == MIXED_TEXT[:30]
        assert encounter.attending_doctor == MIXED_TEXT[:20]
        stored = session.get(Ticket, ticket.json()["id"])
        assert stored is not None
        assert stored.summary.startswith(MIXED_TEXT[:20])


async def test_the_5xx_the_fuzzers_found_are_now_clear_4xx(api: Api) -> None:
    """Each of these once crashed with a 500 (or, for the last ones, broke a journey)."""
    now = await api.env.get_current_time()
    journey = f"/journeys/{api.enrollment_id}"
    year_one = "0001-01-01T00:00:00+14:00"
    cases: list[tuple[str, str, Any, int | None, str]] = [
        ("GET", "/tickets?due_before=2026-01-01T00:00:00", None, 422, "naive datetime"),
        ("GET", "/audit?since=0001-01-01T00:00:00%2B14:00", None, 422, "out of range"),
        ("GET", "/pathways/pci/preview?discharged=2026-01-01&timezone=Nowhere", None, 422, "zone"),
        (  # a 200 or an unplaced "out of range", depending on the timezone's offset
            "GET",
            "/pathways/pci/preview?discharged=0001-01-01&timezone=UTC",
            None,
            422,
            "query.discharged: must be between 1900-01-01 and 2999-12-31",
        ),
        (
            "GET",
            "/pathways/pci/preview?discharged=9999-12-31&timezone=Pacific/Kiritimati",
            None,
            422,
            "query.discharged: must be between",
        ),
        ("GET", "/journeys/4398046511103", None, None, ""),  # beyond PostgreSQL's integer
        ("GET", f"/patients/{2**64}", None, None, ""),  # beyond SQLite's integer
        ("POST", "/tickets", {"patient_id": 2**40, "text": "x"}, None, ""),
        (
            "POST",
            f"{journey}/observations",
            {"observations": [{"indicator": "sbp", "value": 1}], "observed_at": year_one},
            422,
            "must be between",
        ),
        (
            "POST",
            f"{journey}/reschedule",
            {"next_due": "9999-12-31T00:00:00+00:00"},
            422,
            "between",
        ),
        (
            "POST",
            "/intake/discharges",
            {**discharge(7, now), "time_scale": 1e-9},
            422,
            "equal to 1",
        ),
        (
            "POST",
            "/intake/discharges",
            discharge(8, dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
            422,
            "between",
        ),
    ]
    for method, url, body, status, message in cases:
        response = await api.client.request(method, url, json=body, headers=api.auth)
        assert_clear_answer(response)
        assert response.status_code == (status or response.status_code) >= 400, (url, response.text)
        assert message in response.json()["error"]["message"], (url, response.text)


async def test_a_roster_giving_a_contact_twice_is_a_422_not_a_500(door: Door) -> None:
    """Found by schemathesis: the same contact twice broke the contacts' uniqueness (a 500)."""
    roster = {
        "staff": [
            {
                "username": "dr.wang",
                "display_name": "王医生",
                "departments": ["cardiology"],
                "contacts": [
                    {"system": "phone", "value": "13900000001"},
                    {"system": "email", "value": "wang@example.org"},
                    {"system": "phone", "value": "139 0000 0001"},  # the same number
                ],
            }
        ],
        "departments": {"cardiology": {"primary": "dr.wang"}},
    }
    response = await door.client.put("/oncall", json=roster, headers=door.auth)
    assert response.status_code == 422, response.text
    assert "staff dr.wang: contacts[2] repeats an earlier phone contact" in error_of(response)
    with Session(door.runtime.engine) as session:  # refused whole: nobody was added
        assert session.exec(select(StaffUser).where(StaffUser.username == "dr.wang")).all() == []
    roster["staff"][0]["contacts"].pop()
    accepted = await door.client.put("/oncall", json=roster, headers=door.auth)
    assert accepted.status_code == 200, accepted.text


# ------------------------------------------------------------------ intake properties


def _set_path(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = document
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):  # an earlier mutation may have replaced the parent
        node[path[-1]] = value


INTAKE_FIELDS = [
    ("pathway",),
    ("pathway_version",),
    ("risk_tier",),
    ("time_scale",),
    ("idempotency_key",),
    ("patient",),
    ("patient", "external_id"),
    ("patient", "name"),
    ("patient", "sex"),
    ("patient", "birth_date"),
    ("patient", "locale"),
    ("patient", "timezone"),
    ("patient", "phone"),
    ("patient", "email"),
    ("patient", "id_number"),
    ("patient", "address"),
    ("patient", "preferred_channels"),
    ("patient", "contact_consent"),
    ("encounter",),
    ("encounter", "external_id"),
    ("encounter", "kind"),
    ("encounter", "department"),
    ("encounter", "diagnosis_codes"),
    ("encounter", "procedure_codes"),
    ("encounter", "admitted_at"),
    ("encounter", "discharged_at"),
    ("encounter", "length_of_stay_days"),
    ("encounter", "charlson_index"),
]
INTAKE_VALUES = (
    json_values
    | st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=14))])).map(
        dt.datetime.isoformat
    )
    | st.datetimes().map(dt.datetime.isoformat)
    | st.dates().map(dt.date.isoformat)
    | st.sampled_from(["pci", "cardiology", "I21.4", "Asia/Shanghai", "en", "high", MIXED_TEXT])
    | st.floats()
)


async def test_intake_answers_any_payload_with_2xx_or_a_clear_4xx(api: Api) -> None:
    request = api.from_thread()
    now = await api.env.get_current_time()
    counts = {"mutated": 0, "arbitrary": 0, "created": 0}

    @fuzz_settings(40)
    @given(data=st.data())
    def mutated(data: st.DataObject) -> None:
        payload = discharge(data.draw(st.integers(100, 103)), now)
        for path in data.draw(st.lists(st.sampled_from(INTAKE_FIELDS), min_size=1, max_size=3)):
            _set_path(payload, path, data.draw(INTAKE_VALUES))
        response = request(
            method="POST",
            url="/intake/discharges",
            content=json.dumps(payload, ensure_ascii=data.draw(st.booleans())),
            headers={**api.auth, "content-type": "application/json"},
        )
        counts["mutated"] += 1
        counts["created"] += response.status_code == 201
        assert_clear_answer(response)

    @fuzz_settings(30)
    @given(body=json_values | st.binary(max_size=200))
    def arbitrary(body: Any) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body)
        response = request(
            method="POST",
            url="/intake/discharges",
            content=content,
            headers={**api.auth, "content-type": "application/json"},
        )
        counts["arbitrary"] += 1
        assert_clear_answer(response)

    await asyncio.to_thread(mutated)
    await asyncio.to_thread(arbitrary)
    print(f"intake: {counts}")
    assert counts["mutated"] >= examples(40), counts
    assert counts["arbitrary"] >= examples(30), counts


# ------------------------------------------------------------------ schemathesis


def caller(api: Api, role: str) -> dict[str, str]:
    """The fuzzer's credentials: the fixture's admin, or a cardiology nurse (the seeded
    journey's department, so the nurse's reads and actions reach real records)."""
    if role == "admin":
        return api.auth
    with Session(api.runtime.engine) as session:
        user = create_user(
            session, username=role, display_name=role, role=Role(role), departments=["cardiology"]
        )
        token, _ = issue_token(session, user, name="schemathesis")
    return {"Authorization": f"Bearer {token}"}


def timezone_parameters(schema: dict[str, Any]) -> list[str]:
    """Where the OpenAPI schema takes an IANA timezone: so the fuzzer is known to cover them."""
    found = [
        f"{method.upper()} {path} ?{parameter['name']}"
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        for parameter in operation.get("parameters", [])
        if "IANA timezone" in json.dumps(parameter)
    ]
    found += [
        f"schema {name}.{field}"
        for name, component in schema["components"]["schemas"].items()
        for field, spec in component.get("properties", {}).items()
        if "IANA timezone" in json.dumps(spec)
    ]
    return found


@pytest.mark.parametrize("role", ["admin", "nurse"])
async def test_no_route_of_the_openapi_schema_answers_with_a_5xx(api: Api, role: str) -> None:
    """Every operation, schema-valid and schema-violating cases, as an admin and as a nurse:
    the spec is the app's own, and schemathesis's "not a server error" check must hold."""
    openapi = api.app.openapi()
    assert set(timezone_parameters(openapi)) >= {
        "GET /pathways/{pathway_id}/preview ?timezone",
        "schema PatientIn.timezone",
    }
    schema = schemathesis.openapi.from_dict(openapi)
    request = api.from_thread()
    auth = caller(api, role)
    per_operation = examples(int(os.environ.get("SUIFANG_SCHEMATHESIS_EXAMPLES", "8")))
    sent: dict[str, int] = {}
    server_errors: list[str] = []
    timezones_sent: list[str] = []

    def call(case: Any) -> httpx.Response:
        prepared = case.as_transport_kwargs(base_url="http://suifang.test")
        kwargs: dict[str, Any] = {
            "method": prepared["method"],
            "url": prepared["url"],
            "params": prepared.get("params"),
            "headers": {**(prepared.get("headers") or {}), **auth},
        }
        if "json" in prepared:
            kwargs["json"] = prepared["json"]
        elif isinstance(prepared.get("data"), bytes | str):
            kwargs["content"] = prepared["data"]
        elif prepared.get("data") is not None:
            kwargs["data"] = prepared["data"]
        try:
            return request(**kwargs)
        except (httpx.HTTPError, UnicodeError, ValueError, TypeError):
            reject()  # httpx itself cannot send this (e.g. a header that is not Latin-1)
            raise  # unreachable: reject() raises

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        @settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            ids = case.path_parameters or {}
            if ids.get("user_id") == api.user_id or ids.get("token_id") == api.token_id:
                reject()  # keep the fuzzer's own account and token alive
            zone = (case.query or {}).get("timezone")
            if zone is None and isinstance(case.body, dict):
                patient = case.body.get("patient")
                zone = patient.get("timezone") if isinstance(patient, dict) else None
            if zone is not None:
                timezones_sent.append(repr(zone))
            response = call(case)
            sent[mode.value] = sent.get(mode.value, 0) + 1
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except FailureGroup as exc:
                if len(server_errors) < 20:
                    server_errors.append(f"{operation.label}: {str(exc)[:1500]}")

        # Unsatisfiable: nothing to violate (no parameters); the positive run covers it.
        with contextlib.suppress(Unsatisfiable):
            check()

    def explore() -> None:
        for result in schema.get_all_operations():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(result.ok(), mode)

    await asyncio.to_thread(explore)
    total = sum(sent.values())
    print(
        f"schemathesis as {role}: {total} requests {sent}, {len(timezones_sent)} with a "
        f"timezone, {len(server_errors)} with a 5xx"
    )
    assert not server_errors, "\n\n".join(server_errors)
    assert sent.get("positive", 0) >= 30, sent
    assert sent.get("negative", 0) >= 30, sent
    assert len(timezones_sent) >= 5, timezones_sent
