"""How deep a webhook body nests, measured without a recursive parser.

Python's ``json`` module recurses once per level and raises ``RecursionError`` near 1,000;
a signed body nested 5,000 levels deep used to end in a 500 and was never stored. Every
webhook body is measured here first — JSON by its brackets outside strings, XML by a
streaming parser that refuses DTDs and entities — and refused past ``max_depth``. Form
bodies do not nest.
"""

from __future__ import annotations

import io
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

__all__ = ["TooDeep", "check_nesting"]

_JSON_OPEN, _JSON_CLOSE = frozenset(b"[{"), frozenset(b"]}")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


class TooDeep(ValueError):
    """A body nested deeper than allowed; the message says how deep and what the limit is."""


def _json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _JSON_OPEN:
            depth += 1
            if depth > max_depth:
                return True
        elif byte in _JSON_CLOSE:
            depth -= 1
    return False


def _xml_depth_exceeds(body: bytes, max_depth: int) -> bool:
    depth = 0
    try:
        for event, _ in iterparse(io.BytesIO(body), events=("start", "end"), forbid_dtd=True):
            depth += 1 if event == "start" else -1
            if depth > max_depth:
                return True
    except (ParseError, DefusedXmlException):
        return False  # malformed or hostile XML: the channel's own parser says what is wrong
    return False


def check_nesting(body: bytes, max_depth: int) -> None:
    """Raise :class:`TooDeep` if ``body`` (JSON or XML, by its first character) nests deeper
    than ``max_depth`` levels."""
    start = body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
    if start in (b"{", b"["):
        too_deep = _json_depth_exceeds(body, max_depth)
        kind = "JSON"
    elif start == b"<":
        too_deep = _xml_depth_exceeds(body, max_depth)
        kind = "XML"
    else:
        return
    if too_deep:
        raise TooDeep(f"the {kind} body nests deeper than {max_depth} levels")
