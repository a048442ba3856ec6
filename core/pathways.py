"""Pathway sources registered by plugins (the template schema itself arrives with journeys)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["PathwayRegistry", "PathwaySource"]

PathwaySource = Path
PathwayRegistry = Callable[[PathwaySource], None]
