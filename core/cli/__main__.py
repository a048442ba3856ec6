from __future__ import annotations

from suifang.core.cli import _entry

_entry()
