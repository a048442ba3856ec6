"""The system of record: every table, re-exported so importing this module registers them all."""

from __future__ import annotations

from suifang.core.models.base import metadata
from suifang.core.models.departments import (
    Department,
    DepartmentBase,
    DepartmentCreate,
    DepartmentPublic,
)

__all__ = [
    "Department",
    "DepartmentBase",
    "DepartmentCreate",
    "DepartmentPublic",
    "metadata",
]
