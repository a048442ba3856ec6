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

__all__ = ["DEFAULT_DEPARTMENT", "route", "set_rule"]

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


def route(session: Session, plugins: Plugins, request: RoutingRequest) -> str:
    """The department code that owns a ticket described by ``request``."""
    chosen = plugins.route_ticket(request)
    if chosen is not None:
        if session.get(Department, chosen) is not None:
            return chosen
        log.warning("a routing plugin named an unknown department; using the routing table")
    rule = session.get(RoutingRule, request.category)
    if rule is not None:
        return rule.department_code
    if request.clinical and request.discharge_department:
        return request.discharge_department
    return DEFAULT_DEPARTMENT
