"""IANA timezone names, checked against the tz database before anything opens a file.

``ZoneInfo(name)`` treats its argument as a path under the tz directories: ``"Asia"`` opens a
directory (IsADirectoryError), 300 characters overflow the file-name limit (OSError), a NUL
byte or ``..`` raise ValueError. Every timezone that enters suifang — an API field or query
parameter, a setting, a CLI option, a roster or calendar file — is therefore checked by
membership in the set of zone names the tz database lists (``zoneinfo.available_timezones``),
so a name that is not a zone never reaches the file system.

Use :data:`IanaTimezone` as the type of a pydantic field or FastAPI parameter and
:func:`check_timezone` anywhere else (a CLI option, a file read by hand).
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, WithJsonSchema

__all__ = [
    "LONGEST_TIMEZONE_NAME",
    "IanaTimezone",
    "check_timezone",
    "known_timezones",
]

LONGEST_TIMEZONE_NAME = 64
"""The width of the timezone columns; the longest IANA name is 32 characters."""

# Not IANA names: a Debian symlink to whatever zone the host is set to, and the template
# file of POSIX TZ strings. Accepting them would make a patient's clock depend on the server.
_HOST_SPECIFIC = frozenset({"localtime", "posixrules"})


@functools.cache
def known_timezones() -> frozenset[str]:
    """Every zone name of the tz database (the system's, else the ``tzdata`` package's)."""
    return frozenset(zoneinfo.available_timezones()) - _HOST_SPECIFIC


def _shown(value: str) -> str:
    """The value as an error message can quote it: escaped, at most 40 characters."""
    quoted = repr(value[:40])
    return quoted + ("…" if len(value) > 40 else "")


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA timezone; ValueError saying why not otherwise."""
    if value in known_timezones():
        return value
    if not value:
        raise ValueError("the timezone is empty; give an IANA zone name such as Asia/Shanghai")
    hint = "give a zone name such as Asia/Shanghai"
    cities = sorted(name for name in known_timezones() if name.startswith(f"{value}/"))
    if cities:  # "Asia": a region of the database, a directory on disk, not a zone
        hint = f"that is a region, not a zone: name one of its cities, such as {cities[0]}"
    raise ValueError(f"unknown IANA timezone {_shown(value)}; {hint}")


IanaTimezone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=LONGEST_TIMEZONE_NAME),
    AfterValidator(check_timezone),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": LONGEST_TIMEZONE_NAME,
            "description": "An IANA timezone name (tz database), e.g. Asia/Shanghai.",
            "examples": ["Asia/Shanghai", "Asia/Urumqi", "UTC"],
        }
    ),
]
"""A field or parameter holding an IANA timezone name, refused (422) unless it is one."""
