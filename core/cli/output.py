"""Plain, aligned terminal output (tables, key/value blocks) and JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["emit_json", "print_kv", "print_table"]


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(
        2
        if ch >= "\u1100"
        and (
            ch <= "\u115f"
            or "\u2e80" <= ch <= "\ua4cf"
            or "\uac00" <= ch <= "\ud7a3"
            or "\uf900" <= ch <= "\ufaff"
            or "\ufe30" <= ch <= "\ufe4f"
            or "\uff00" <= ch <= "\uff60"
            or "\uffe0" <= ch <= "\uffe6"
        )
        else 1
        for ch in text
    )


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(none)"
) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    if not cells:
        print(empty)
        return
    widths = [max(_width(h), *(_width(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_kv(pairs: Iterable[tuple[str, Any]]) -> None:
    items = [(k, "" if v is None else str(v)) for k, v in pairs]
    width = max((_width(k) for k, _ in items), default=0)
    for key, value in items:
        print(f"{_pad(key, width)}  {value}")


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=_default)
    sys.stdout.write("\n")
