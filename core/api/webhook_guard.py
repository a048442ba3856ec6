"""Rate limits on refused webhook calls, per source and per channel.

The webhook endpoint is public: anyone can post to it. Refused calls (a bad signature, a
malformed or too deep body; replays only per channel) are counted in a moving one-minute
window, with the ``limits`` library (the engine behind Flask-Limiter and SlowAPI):

- per source (the client IP as the ASGI server reports it — behind a proxy, run uvicorn with
  ``--proxy-headers`` and ``--forwarded-allow-ips`` so it is the caller's, not the proxy's):
  past ``SUIFANG_WEBHOOK_FAILURES_PER_SOURCE`` a minute, every call from that source is
  answered 429 before anything is read or stored;
- per channel: past ``SUIFANG_WEBHOOK_FAILURES_PER_CHANNEL`` a minute, refused calls on
  that channel are answered 429 and no longer recorded, while calls that verify are served as
  usual, so a flood cannot lock the real provider out.

Counts live in the API process's memory: each process limits what it sees, and a restart
forgets them (the replay cache and the rejection log are in the database).
"""

from __future__ import annotations

from fastapi import Request
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from suifang.core.config import Settings

__all__ = ["WebhookLimits", "webhook_limits"]

RETRY_AFTER_SECONDS = 60


class WebhookLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_source = RateLimitItemPerMinute(settings.webhook_failures_per_source)
        self._per_channel = RateLimitItemPerMinute(settings.webhook_failures_per_channel)

    def source_blocked(self, source: str) -> bool:
        """Whether ``source`` has used up its refused calls for the current minute."""
        return not self._limiter.test(self._per_source, "source", source)

    def count_refusal(self, source: str, channel: str, *, verified: bool = False) -> bool:
        """Count one refused call; whether the channel's budget still allows recording it.

        A verified call refused as a replay does not count against its source: providers
        re-deliver from a few shared addresses (WeChat retries a push it waited 5 s for), and
        blocking those would lock the real provider out. It still uses the channel's budget
        for recording.
        """
        if not verified:
            self._limiter.hit(self._per_source, "source", source)
        return self._limiter.hit(self._per_channel, "channel", channel)


def webhook_limits(request: Request) -> WebhookLimits:
    """The app's limits, made on first use from the runtime's settings."""
    state = request.app.state
    limits = getattr(state, "webhook_limits", None)
    if limits is None:
        limits = state.webhook_limits = WebhookLimits(state.runtime.settings)
    return limits
