"""How long an API token may live: at least a minute, at most ``SUIFANG_TOKEN_MAX_LIFETIME_DAYS``.

A lifetime arrives as a number of days from the API or the CLI. ``1e-300`` days is a
``timedelta`` of zero, and a zero lifetime used to be read as "never expires"; NaN, infinity,
zero, negative and huge numbers are just as meaningless. Every token therefore expires, within
bounds that one function checks for every way a token is issued.
"""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["MAX_LIFETIME_SETTING", "MIN_TOKEN_LIFETIME", "token_lifetime"]

MIN_TOKEN_LIFETIME = dt.timedelta(minutes=1)
MAX_LIFETIME_SETTING = "SUIFANG_TOKEN_MAX_LIFETIME_DAYS"
_MIN_DAYS = MIN_TOKEN_LIFETIME / dt.timedelta(days=1)


def token_lifetime(days: float | None, *, max_days: float) -> dt.timedelta:
    """``days`` as a token's lifetime; ValueError saying what is allowed otherwise."""
    allowed = f"from 1 minute ({_MIN_DAYS:.6f}) to {max_days:g} days ({MAX_LIFETIME_SETTING})"
    if days is None:
        raise ValueError(f"every token expires: give a lifetime in days, {allowed}")
    if not math.isfinite(days):
        raise ValueError(f"{days} is not a number of days; give one {allowed}")
    if not _MIN_DAYS <= days <= max_days:
        raise ValueError(f"{days:g} days is out of bounds: a token lives {allowed}")
    return dt.timedelta(days=days)
