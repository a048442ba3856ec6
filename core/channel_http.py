"""HTTP helpers for channel plugins: one provider call, its status classified, its Retry-After.

Every channel that talks to a provider over HTTP needs the same three things, and a third-party
channel plugin can use them as the built-in ones do::

    from suifang.core.channel_http import error_for_status, send_request

    response = await send_request(self.http, "POST", url, provider="Acme SMS", json=payload)
    if error := error_for_status(response, provider="Acme SMS"):
        raise error

- :func:`send_request` turns a timeout or a connection failure into a
  :class:`~suifang.core.channels.TransientChannelError` (Temporal retries it); the timeout
  itself is the channel's ``TIMEOUT_SECONDS`` setting, applied by :attr:`Channel.http`.
- :func:`is_retryable_status`: 408, 429 and every 5xx are worth retrying; any other 4xx or a
  3xx is not (a redirect means the configured URL is wrong, which no retry fixes).
- :func:`retry_after`: the ``Retry-After`` header in seconds, as delta-seconds or an HTTP date.

A channel whose provider puts its own error codes in the body classifies those first and falls
back on :func:`is_retryable_status` and :func:`transient_error` for the rest.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

import httpx

from suifang.core.channels import ChannelError, PermanentChannelError, TransientChannelError

__all__ = [
    "RETRYABLE_CLIENT_STATUSES",
    "error_for_status",
    "is_retryable_status",
    "retry_after",
    "send_request",
    "transient_error",
]

RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
"""The 4xx statuses that mean "later": Request Timeout and Too Many Requests."""


def is_retryable_status(status_code: int) -> bool:
    """Whether a non-2xx status is worth retrying: 408, 429 or any 5xx."""
    return status_code in RETRYABLE_CLIENT_STATUSES or status_code >= 500


def retry_after(response: httpx.Response, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from the ``Retry-After`` header (delta-seconds or an HTTP date), if any.

    A date in the past gives 0; a date without a zone (``-0000``) is read as UTC, as RFC 9110
    says HTTP dates are; anything unparseable gives ``None`` (the retry policy decides).
    """
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def transient_error(response: httpx.Response, message: str) -> TransientChannelError:
    """A :class:`TransientChannelError` carrying the response's ``Retry-After``."""
    return TransientChannelError(message, retry_after=retry_after(response))


def error_for_status(response: httpx.Response, *, provider: str) -> ChannelError | None:
    """``None`` for a 2xx answer, else the classified error with a generic message.

    Channels that can say more (which setting to check, the provider's error code) build their
    own message around :func:`is_retryable_status` instead.
    """
    status = response.status_code
    if response.is_success:
        return None
    if is_retryable_status(status):
        return transient_error(response, f"{provider} answered HTTP {status}")
    if 300 <= status < 400:
        return PermanentChannelError(
            f"{provider} answered HTTP {status} (a redirect); configure the final address"
        )
    return PermanentChannelError(f"{provider} refused the request: HTTP {status}")


async def send_request(
    client: httpx.AsyncClient, method: str, url: str, *, provider: str, **kwargs: Any
) -> httpx.Response:
    """``client.request(method, url, **kwargs)``, a timeout or connection failure made transient.

    The error names the provider and the exception type, never the URL (it may carry a token).
    """
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise TransientChannelError(f"{provider} timed out") from None
    except httpx.TransportError as exc:
        raise TransientChannelError(f"{provider} unreachable ({type(exc).__name__})") from None
