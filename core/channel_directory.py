"""The channels a process can use: registered, not blocked, configured — with rate limits.

A channel whose settings do not validate (e.g. no gateway URL) is *unavailable*; the reason
is kept for ``GET /channels`` and the delivery record, and the cascade skips it.
"""

from __future__ import annotations

import asyncio
import time

from suifang.core.channels import Channel
from suifang.core.errors import ConfigurationError
from suifang.core.plugins import Plugins

__all__ = ["ChannelDirectory"]


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class ChannelDirectory:
    """The channels this worker can use: registered, not blocked, and configured.

    A channel whose settings do not validate (e.g. no gateway URL) is unavailable, with the
    reason kept for ``suifang channels`` and the delivery record.
    """

    def __init__(self, plugins: Plugins, *, instances: dict[str, Channel] | None = None) -> None:
        self.classes = plugins.channel_classes()
        self._instances: dict[str, Channel] = dict(instances or {})
        self._problems: dict[str, str] = {}
        self._buckets: dict[str, _TokenBucket] = {}

    def get(self, name: str) -> Channel | None:
        if name in self._instances:
            return self._instances[name]
        if name in self._problems:
            return None
        channel_class = self.classes.get(name)
        if channel_class is None:
            self._problems[name] = "no such channel is installed"
            return None
        try:
            config = channel_class.load_config()
        except ConfigurationError as exc:
            self._problems[name] = f"not configured: {exc}"
            return None
        if not config.enabled:
            self._problems[name] = "disabled"
            return None
        channel = channel_class(config)
        self._instances[name] = channel
        return channel

    def problem(self, name: str) -> str | None:
        self.get(name)
        return self._problems.get(name)

    def status(self) -> dict[str, str | None]:
        return {name: self.problem(name) for name in sorted(self.classes)}

    def bucket(self, channel: Channel) -> _TokenBucket:
        if channel.name not in self._buckets:
            self._buckets[channel.name] = _TokenBucket(channel.config.rate_per_second)
        return self._buckets[channel.name]

    async def aclose(self) -> None:
        for channel in self._instances.values():
            await channel.aclose()
