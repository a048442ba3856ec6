"""An operator sees each channel's state and settings, secrets masked: ``suifang channels``,
``GET /channels`` and ``suifang config``."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from suifang.core.api import create_app
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role
from tests.core.test_security import bearer, token_for

SECRET = "sk-very-secret-gateway-key-0042"

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def sms_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUIFANG_CHANNEL_SMS_URL", "https://gw.example/send")
    monkeypatch.setenv("SUIFANG_CHANNEL_SMS_API_KEY", SECRET)
    monkeypatch.delenv("SUIFANG_CHANNEL_EMAIL_FROM_ADDRESS", raising=False)


def test_the_cli_lists_channels_with_their_settings_masked(cli: Cli, sms_env: None) -> None:
    code, out, err = cli("channels")
    assert code == 0, err
    assert "sms (phone) — available" in out
    assert "SUIFANG_CHANNEL_SMS_URL" in out
    assert "https://gw.example/send" in out
    assert "SUIFANG_CHANNEL_SMS_API_KEY" in out
    assert "•••• (set)" in out
    # Unavailable, with the reason an operator can act on.
    assert "email (email) — UNAVAILABLE" in out
    assert "SUIFANG_CHANNEL_EMAIL_FROM_ADDRESS" in out
    assert SECRET not in out + err
    code, out, _ = cli("channels", "--json")
    sms = next(c for c in json.loads(out) if c["name"] == "sms")
    assert sms["settings"]["SUIFANG_CHANNEL_SMS_API_KEY"] == "•••• (set)"
    assert SECRET not in out
    code, out, _ = cli("config")
    assert "SUIFANG_CHANNEL_SMS_URL" in out
    assert SECRET not in out


async def test_the_api_shows_the_same_to_those_who_may_read_channels(
    runtime: Runtime, sms_env: None
) -> None:
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as api:
        response = await api.get(
            "/channels", headers=bearer(token_for(runtime, "root", Role.ADMIN))
        )
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    sms = next(c for c in response.json() if c["name"] == "sms")
    assert (sms["available"], sms["contact_system"]) == (True, "phone")
    assert sms["settings"]["SUIFANG_CHANNEL_SMS_URL"] == "https://gw.example/send"
    outbox = next(c for c in response.json() if c["name"] == "outbox")
    assert outbox["contact_system"] is None
