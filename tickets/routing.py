"""Routing: which department owns a ticket.

In order: a ``suifang_route_ticket`` plugin's answer, the administrators' routing table
(category → department, ``routing_rule``), the patient's discharge department for clinical
matters, and finally the patient services desk. A department a plugin names must exist.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

from sqlmodel import Session

from suifang.core.categories import CATEGORY_IDS
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Department, RoutingRule
from suifang.core.plugins import Plugins
from suifang.core.triage import RoutingRequest

__all__ = [
    "DEFAULT_DEPARTMENT",
    "RoutingChange",
    "choose_department",
    "delete_rule",
    "route",
    "set_rule",
]

log = logging.getLogger("suifang.routing")

DEFAULT_DEPARTMENT = "patient_services"


@dataclass(frozen=True, slots=True)
class RoutingChange:
    """One change to the routing table, for the caller's answer and the audit log."""

    category: str
    department: str | None
    """Where the category goes now; None: the rule was deleted (the fallbacks apply)."""
    previous: str | None

    def audit_detail(self) -> dict[str, str | None]:
        return {"category": self.category, "from": self.previous, "to": self.department}


def _known_category(category: str) -> str:
    if category not in CATEGORY_IDS:
        close = difflib.get_close_matches(category, CATEGORY_IDS, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}?" if close else f"categories: {', '.join(CATEGORY_IDS)}"
        raise ValidationFailed(f"unknown category {category!r} ({hint})")
    return category


def set_rule(session: Session, category: str, department: str) -> RoutingChange:
    """Route ``category`` (one of the known categories) to ``department`` (which must exist)."""
    _known_category(category)
    if session.get(Department, department) is None:
        raise NotFoundError(f"no department {department!r}")
    rule = session.get(RoutingRule, category)
    previous = rule.department_code if rule is not None else None
    rule = rule or RoutingRule(category=category, department_code=department)
    rule.department_code = department
    session.add(rule)
    session.commit()
    return RoutingChange(category, department, previous)


def delete_rule(session: Session, category: str) -> RoutingChange:
    """Remove ``category``'s rule: its tickets go to the discharge department (clinical) or
    the patient services desk, unless a plugin routes them."""
    _known_category(category)
    rule = session.get(RoutingRule, category)
    if rule is None:
        raise NotFoundError(f"no routing rule for {category!r}")
    previous = rule.department_code
    session.delete(rule)
    session.commit()
    return RoutingChange(category, None, previous)


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
