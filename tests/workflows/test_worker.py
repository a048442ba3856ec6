"""The worker's activities never await while they hold a database connection.

That is what lets the worker run as many activities at once as it likes on a small pool
(``SUIFANG_WORKER_MAX_CONCURRENT_ACTIVITIES``): an activity that awaited a provider with a
connection checked out would, with enough of them in flight, empty the pool, and the next
checkout would block the event loop — and with it every activity that could give one back.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import suifang.core
import suifang.tickets
import suifang.workflows

# core/ for the delivery cascade the send activities of both domains run.
DOMAINS = (
    Path(suifang.workflows.__file__).parent,
    Path(suifang.tickets.__file__).parent,
    Path(suifang.core.__file__).parent,
)
ACTIVITY_MODULES = sorted(
    path
    for domain in DOMAINS
    for path in domain.glob("*.py")
    if "@activity.defn" in path.read_text(encoding="utf-8") or path.name == "delivery.py"
)
HOLDS_CONNECTION = ("Session(", "session_scope(", ".begin(", ".connect(")


def awaits_holding_a_connection(source: str) -> list[str]:
    """``function: line`` of each await inside a block that has a connection checked out."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for block in ast.walk(function):
            if not isinstance(block, ast.With):
                continue
            opened = [ast.unparse(item.context_expr) for item in block.items]
            if not any(marker in text for text in opened for marker in HOLDS_CONNECTION):
                continue
            for node in ast.walk(block):
                if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
                    found.append(f"{function.name}: line {node.lineno}")
    return found


def test_the_check_finds_an_await_inside_a_session() -> None:
    holding = textwrap.dedent(
        """
        async def notify(self, notice):
            with Session(self.runtime.engine) as session:
                department = session.get(Department, notice.department)
                await email.send(department.supervisor_email)
        """
    )
    released = holding.replace("        await", "    await")
    assert awaits_holding_a_connection(holding) == ["notify: line 5"]
    assert awaits_holding_a_connection(released) == []


def test_no_activity_awaits_with_a_connection_checked_out() -> None:
    assert {path.name for path in ACTIVITY_MODULES} >= {
        "delivery.py",
        "journey_activities.py",
        "activities.py",
    }
    offenders = {
        path.name: found
        for path in ACTIVITY_MODULES
        if (found := awaits_holding_a_connection(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
