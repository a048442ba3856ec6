"""What every CLI command shares: settings and a lazily built runtime."""

from __future__ import annotations

import functools
import getpass
import uuid

from suifang.core.config import Settings, get_settings
from suifang.core.runtime import Runtime

__all__ = ["cli_actor", "cli_audit", "cli_runtime", "cli_settings"]


def cli_settings() -> Settings:
    return get_settings()


@functools.cache
def cli_runtime() -> Runtime:
    from suifang.core.seed import ensure_schema

    runtime = Runtime.from_settings(cli_settings())
    ensure_schema(runtime.engine)
    return runtime


def cli_actor() -> str:
    """Who acts on the command line: the operating-system user (with the CLI's admin rights)."""
    return f"cli:{getpass.getuser()}"


def cli_audit(
    action: str, resource: str, patient_ids: list[int], resource_id: str | None = None
) -> None:
    """Audit a command that read or changed patient data, like the API does for requests."""
    from suifang.core.security.audit import record_audit

    record_audit(
        cli_runtime().engine,
        actor=cli_actor(),
        role="admin",
        action=f"cli {action}",
        resource=resource,
        resource_id=resource_id,
        patient_ids=patient_ids,
        outcome="ok",
        request_id=f"cli-{uuid.uuid4().hex[:12]}",
    )
