"""The headless HTTP API (FastAPI)."""

from __future__ import annotations

from suifang.core.api.app import create_app

__all__ = ["create_app"]
