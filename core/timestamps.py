"""The one definition of a plausible moment: timezone-aware, between the years 1900 and 2999.

Every instant a person or a feed gives suifang (a discharge, an observation, a "when" on the
command line or in a query) passes this check, so a naive time is never guessed at and a
typo like year 1 or 9999 is refused before a workflow timer or a UTC conversion overflows.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["EARLIEST", "LATEST", "PlausibleDate", "PlausibleInstant", "plausible_instant"]

EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2999, 12, 31, tzinfo=dt.UTC)
_RANGE = f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"


def plausible_instant(value: dt.datetime) -> dt.datetime:
    """``value`` if it is aware and within the plausible years; else a ValueError saying why."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("give a timezone, e.g. 2026-11-20T10:00+08:00")
    if not EARLIEST <= value <= LATEST:
        raise ValueError(_RANGE)
    return value


def _plausible_day(value: dt.date) -> dt.date:
    if not EARLIEST.date() <= value <= LATEST.date():
        raise ValueError(_RANGE)
    return value


PlausibleInstant = Annotated[dt.datetime, AfterValidator(plausible_instant)]
"""A datetime field: timezone-aware, between the years 1900 and 2999."""

PlausibleDate = Annotated[dt.date, AfterValidator(_plausible_day)]
"""A date field between the years 1900 and 2999 (a schedule from year 1 or 9999 overflows, or
not, depending on the timezone's offset)."""
