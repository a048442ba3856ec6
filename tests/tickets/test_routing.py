"""Routing: a plugin's rule, then the administrators' table, then the discharge department."""

from __future__ import annotations

import datetime as dt
import json
import types
from collections.abc import Callable
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session

from suifang.core.api import create_app
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import NotFoundError
from suifang.core.hooks import hookimpl
from suifang.core.models import RoutingRule
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.security.audit import query_audit
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.seed import seed_routing
from suifang.core.triage import RoutingRequest
from suifang.tickets.routing import DEFAULT_DEPARTMENT, route, set_rule

Cli = Callable[..., tuple[int, str, str]]


def request(
    category: str, *, clinical: bool, discharge: str | None = "cardiology"
) -> RoutingRequest:
    return RoutingRequest(
        category=category,
        clinical=clinical,
        source=TicketSource.PATIENT_MESSAGE,
        tier=Tier.L2,
        priority=Priority.ROUTINE,
        discharge_department=discharge,
    )


def test_the_default_table_routes_complaints_and_clinical_questions(runtime: Runtime) -> None:
    with Session(runtime.engine) as session:
        assert route(session, runtime.plugins, request("parking", clinical=False)) == "logistics"
        assert route(session, runtime.plugins, request("billing", clinical=False)) == "billing"
        assert route(session, runtime.plugins, request("food", clinical=False)) == "catering"
        # Clinical matters without a rule go to the department that discharged the patient.
        assert route(session, runtime.plugins, request("medication", clinical=True)) == "cardiology"
        unknown = request("mystery", clinical=False, discharge=None)
        assert route(session, runtime.plugins, unknown) == DEFAULT_DEPARTMENT


def test_administrators_change_the_table(runtime: Runtime) -> None:
    with Session(runtime.engine) as session:
        set_rule(session, "psychological", "psychology")
        assert (
            route(session, runtime.plugins, request("psychological", clinical=True)) == "psychology"
        )
        with pytest.raises(NotFoundError, match="no department 'nowhere'"):
            set_rule(session, "parking", "nowhere")


def test_a_suifang_route_ticket_plugin_wins_and_falls_through_with_none(runtime: Runtime) -> None:
    @hookimpl
    def suifang_route_ticket(request):  # type: ignore[no-untyped-def]
        if request.category == "parking":
            return "patient_services"  # this hospital's front desk handles parking
        if request.category == "billing":
            return "no-such-department"  # refused: the table decides
        return None

    plugin = types.ModuleType("front_desk")
    plugin.suifang_route_ticket = suifang_route_ticket  # type: ignore[attr-defined]
    plugins = Plugins.load(entrypoints=False, extra=[("front-desk", plugin)])
    with Session(runtime.engine) as session:
        assert route(session, plugins, request("parking", clinical=False)) == "patient_services"
        assert route(session, plugins, request("billing", clinical=False)) == "billing"
        assert route(session, plugins, request("medication", clinical=True)) == "cardiology"


async def test_administrators_set_and_delete_rules_through_the_api_audited(
    runtime: Runtime,
) -> None:
    app = create_app(runtime)
    with Session(runtime.engine) as session:
        user = create_user(
            session, username="root", display_name="root", role=Role.ADMIN, departments=None
        )
        token, _ = issue_token(session, user, name="test")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        typo = await client.put(
            "/routing/parkng", json={"department": "logistics"}, headers=headers
        )
        assert typo.status_code == 422
        assert "unknown category 'parkng' (did you mean 'parking'?)" in typo.text

        moved = await client.put(
            "/routing/parking", json={"department": "patient_services"}, headers=headers
        )
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"category": "parking", "department": "patient_services"}

        deleted = await client.delete("/routing/parking", headers=headers)
        assert deleted.status_code == 204
        again = await client.delete("/routing/parking", headers=headers)
        assert again.status_code == 404
        listed = await client.get("/routing", headers=headers)
        assert "parking" not in {rule["category"] for rule in listed.json()}

    with Session(runtime.engine) as session:
        trail = [
            (a.action, a.detail)
            for a in query_audit(session, resource="routing", limit=10)
            if a.outcome == "ok" and a.action.startswith(("PUT", "DELETE"))
        ]
        assert sorted(trail, key=lambda t: t[0]) == [
            (
                "DELETE /routing/{category}",
                {"category": "parking", "from": "patient_services", "to": None},
            ),
            (
                "PUT /routing/{category}",
                {"category": "parking", "from": "logistics", "to": "patient_services"},
            ),
        ]
        # Without a rule, a parking complaint goes to the patient services desk; and the next
        # start does not bring the deleted default back.
        assert route(session, runtime.plugins, request("parking", clinical=False)) == (
            DEFAULT_DEPARTMENT
        )
    seed_routing(runtime.engine)
    with Session(runtime.engine) as session:
        assert session.get(RoutingRule, "parking") is None
        set_rule(session, "parking", "logistics")  # as the other tests expect it


def test_the_cli_refuses_unknown_categories_and_deletes_rules(cli: Cli) -> None:
    code, _, err = cli("routing", "set", "foood", "catering")
    assert code != 0
    assert "unknown category 'foood' (did you mean 'food'?)" in err

    code, out, err = cli("routing", "set", "food", "logistics")
    assert code == 0, err
    assert out.strip() == "food → logistics (was catering)"
    code, out, _ = cli("routing", "delete", "food")
    assert code == 0
    assert out.strip() == "food: rule to logistics deleted"
    code, _, err = cli("routing", "delete", "food")
    assert code != 0
    assert "no routing rule for 'food'" in err
    code, out, _ = cli("routing", "list")
    assert "food" not in out.split()
    code, out, _ = cli("audit", "--resource", "routing", "--json")
    assert code == 0
    trail = {row["action"]: row["detail"] for row in json.loads(out)}
    assert trail["cli routing set"] == {"category": "food", "from": "catering", "to": "logistics"}
    assert trail["cli routing delete"] == {"category": "food", "from": "logistics", "to": None}


def test_the_cli_shows_times_on_the_hospitals_clock(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUIFANG_TIMEZONE", "Asia/Urumqi")
    assert cli("routing", "set", "food", "catering")[0] == 0
    code, out, _ = cli("audit", "--resource", "routing")
    assert code == 0
    assert out.split()[0:2] == ["AT", "(Asia/Urumqi)"]
    code, out, _ = cli("audit", "--resource", "routing", "--json")
    stored = dt.datetime.fromisoformat(json.loads(out)[0]["at"])
    code, table, _ = cli("audit", "--resource", "routing")
    shown = stored.astimezone(ZoneInfo("Asia/Urumqi")).strftime("%Y-%m-%d %H:%M:%S")
    assert shown in table
