"""What every CLI command shares: settings and a lazily built runtime."""

from __future__ import annotations

import functools

from suifang.core.config import Settings, get_settings
from suifang.core.runtime import Runtime

__all__ = ["cli_runtime", "cli_settings"]


def cli_settings() -> Settings:
    return get_settings()


@functools.cache
def cli_runtime() -> Runtime:
    return Runtime.from_settings(cli_settings())
