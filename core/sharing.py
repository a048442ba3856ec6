"""Immutable values decoded once per content and shared by everything that carries them.

A worker decodes the same pathway plan for every journey on it, and the same SLA policy for
every ticket, from each workflow's input — at every start, every replay of an evicted run,
every continue-as-new. Decoding is most of what reading those inputs costs, and each decoded
copy stays in memory as long as its workflow is cached. Frozen models can be shared, so one
decode per distinct content serves them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["SharedByContent", "content_key"]

V = TypeVar("V")


def content_key(*parts: Any) -> str:
    """A key equal for equal JSON content, and only for it."""
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"), default=str)


class SharedByContent(Generic[V]):
    """At most ``kept`` decoded values by content key; full, it starts over.

    Starting over instead of evicting one at a time keeps every operation a single dict call:
    inputs are decoded on the SDK's workflow threads at once, and a dict call is atomic under
    the GIL. Workers see a handful of plans and policies, so it is rarely full.
    """

    def __init__(self, kept: int = 256) -> None:
        self._values: dict[str, V] = {}
        self._kept = kept

    def get(self, key: str, decode: Callable[[], V]) -> V:
        value = self._values.get(key)
        if value is None:
            value = decode()
            if len(self._values) >= self._kept:
                self._values.clear()
            self._values[key] = value
        return value

    def __len__(self) -> int:
        return len(self._values)
