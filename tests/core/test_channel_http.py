"""The channels' shared HTTP helper: Retry-After, status classes, timeouts, refused connections."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from suifang.core.channel_http import (
    error_for_status,
    is_retryable_status,
    retry_after,
    send_request,
)
from suifang.core.channels import PermanentChannelError, TransientChannelError

NOW = dt.datetime(2026, 5, 1, 8, 0, 0, tzinfo=dt.UTC)


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("Fri, 01 May 2026 08:00:30 GMT", 30.0),
        ("Fri, 01 May 2026 08:01:00 -0000", 60.0),
        ("Fri, 01 May 2026 07:59:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str, seconds: float | None) -> None:
    assert retry_after(answer(503, **{"Retry-After": header}), now=NOW) == seconds


def test_retry_after_is_none_without_the_header() -> None:
    assert retry_after(answer(429), now=NOW) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(status, True) for status in (408, 429, 500, 503, 599)],
        *[(status, False) for status in (400, 401, 403, 404, 422, 302)],
    ],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_error_for_status_classifies_with_the_providers_name() -> None:
    assert error_for_status(answer(202), provider="Acme SMS") is None

    busy = error_for_status(answer(429, **{"Retry-After": "9"}), provider="Acme SMS")
    assert isinstance(busy, TransientChannelError)
    assert busy.retry_after == 9.0
    assert str(busy) == "Acme SMS answered HTTP 429"

    refused = error_for_status(answer(404), provider="Acme SMS")
    assert isinstance(refused, PermanentChannelError)
    assert "HTTP 404" in str(refused)

    moved = error_for_status(answer(301, Location="https://x.example"), provider="Acme SMS")
    assert isinstance(moved, PermanentChannelError)
    assert "redirect" in str(moved)


async def test_send_request_returns_the_providers_answer() -> None:
    seen: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"message_id": "gw-1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as client:
        response = await send_request(
            client, "POST", "https://sms.example/send", provider="Acme SMS", json={"to": "+86"}
        )
    assert response.json() == {"message_id": "gw-1"}
    assert seen[0].method == "POST"


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (httpx.ReadTimeout, "Acme SMS timed out"),
        (httpx.ConnectTimeout, "Acme SMS timed out"),
        (httpx.ConnectError, "Acme SMS unreachable (ConnectError)"),
        (httpx.RemoteProtocolError, "Acme SMS unreachable (RemoteProtocolError)"),
    ],
)
async def test_send_request_makes_network_failures_transient(
    failure: type[httpx.TransportError], words: str
) -> None:
    def provider(request: httpx.Request) -> httpx.Response:
        raise failure("boom", request=request)

    url = "https://sms.example/send?token=secret-token"
    async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as client:
        with pytest.raises(TransientChannelError) as caught:
            await send_request(client, "POST", url, provider="Acme SMS")
    assert str(caught.value) == words
    assert "secret-token" not in str(caught.value)


async def test_a_slow_provider_hits_the_clients_timeout() -> None:
    """A real local server that never answers: the client's timeout, not a hang."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=0.2) as client:
            with pytest.raises(TransientChannelError, match="timed out"):
                await send_request(
                    client, "GET", f"http://127.0.0.1:{port}/", provider="Slow provider"
                )
    finally:
        server.close()
