"""Routing: which department owns a ticket.

In order: a ``suifang_route_ticket`` plugin's answer, the administrators' routing table
(category → department, ``routing_rule``), the patient's discharge department for clinical
matters, and finally the patient services desk. A department a plugin names must exist.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from suifang.core.errors import NotFoundError
from suifang.core.models import Department, RoutingRule
from suifang.core.plugins import Plugins
from suifang.core.triage import RoutingRequest

__all__ = ["DEFAULT_DEPARTMENT", "choose_department", "route", "set_rule"]

log = logging.getLogger("suifang.routing")

DEFAULT_DEPARTMENT = "patient_services"


def set_rule(session: Session, category: str, department: str) -> RoutingRule:
    if session.get(Department, department) is None:
        raise NotFoundError(f"no department {department!r}")
    rule = session.get(RoutingRule, category) or RoutingRule(
        category=category, department_code=department
    )
    rule.department_code = department
    session.add(rule)
    session.commit()
    session.refresh(rule)
    return rule


def choose_department(
    request: RoutingRequest,
    *,
    plugin_choice: str | None,
    known_departments: set[str] | frozenset[str],
    table: dict[str, str],
) -> str:
    """The routing decision itself (pure): plugin, table, discharge department, default."""
    if plugin_choice is not None:
        if plugin_choice in known_departments:
            return plugin_choice
        log.warning("a routing plugin named an unknown department; using the routing table")
    if request.category in table:
        return table[request.category]
    if request.clinical and request.discharge_department:
        return request.discharge_department
    return DEFAULT_DEPARTMENT


def route(session: Session, plugins: Plugins, request: RoutingRequest) -> str:
    """The department code that owns a ticket described by ``request``."""
    chosen = plugins.route_ticket(request)
    known = {chosen} if chosen is not None and session.get(Department, chosen) else set()
    rule = session.get(RoutingRule, request.category)
    table = {rule.category: rule.department_code} if rule else {}
    return choose_department(request, plugin_choice=chosen, known_departments=known, table=table)
