"""Routing: a plugin's rule, then the administrators' table, then the discharge department."""

from __future__ import annotations

import types

import pytest
from sqlmodel import Session

from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import NotFoundError
from suifang.core.hooks import hookimpl
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.triage import RoutingRequest
from suifang.tickets.routing import DEFAULT_DEPARTMENT, route, set_rule


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
