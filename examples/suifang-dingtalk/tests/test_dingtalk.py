"""The DingTalk channel against a fake of DingTalk's documented API: the contract suite, then a
journey through the real platform (the test kit's fixtures, a real HTTP server)."""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from suifang_dingtalk import DingTalkChannel, callback_sign

from suifang.sdk import InboundRequest
from suifang.testing import SentMessages
from suifang.testing.channel_contract import ChannelContract, Failure
from suifang.testing.provider_server import ProviderServer

APP_SECRET = "dingtalk-app-secret-for-tests-0123456789"
USER = "manager4220"
KNOWN_USERS = {USER, "staff0017"}

FAILURES: dict[str, tuple[int, dict[str, Any]]] = {
    # Each as DingTalk answers it (HTTP status, body).
    "permanent": (200, {"errcode": 40035, "errmsg": "缺少参数 agent_id"}),
    "recipient": (200, {"errcode": 60121, "errmsg": "找不到该用户"}),
    "transient": (200, {"errcode": -1, "errmsg": "系统繁忙"}),
    "rate_limited": (200, {"errcode": 90018, "errmsg": "当前请求被限流"}),
}


class FakeDingTalk:
    """DingTalk's token and work-notification APIs, and its robot's signed callback."""

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self._failures: deque[Failure] = deque()
        self._sent: dict[tuple[str, str], int] = {}  # (user, content) → task id, per day

    def fail_next(self, failure: Failure) -> None:
        self._failures.append(failure)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/oauth2/accessToken":
            body = json.loads(request.content)
            if body.get("appSecret") != APP_SECRET:
                return httpx.Response(400, json={"code": "invalidClientIdOrSecret"})
            self.tokens_issued += 1
            return httpx.Response(
                200, json={"accessToken": f"tok-{self.tokens_issued}", "expireIn": 7200}
            )
        if request.url.path == "/topapi/message/corpconversation/asyncsend_v2":
            if not parse_qs(request.url.query.decode()).get("access_token"):
                return httpx.Response(
                    200, json={"errcode": 40014, "errmsg": "不合法的access_token"}
                )
            if self._failures:
                status, body = FAILURES[self._failures.popleft()]
                return httpx.Response(status, json=body)
            body = json.loads(request.content)
            user, content = body["userid_list"], body["msg"]["text"]["content"]
            if user not in KNOWN_USERS:
                return httpx.Response(200, json=dict(FAILURES["recipient"][1]))
            # DingTalk: the same content reaches the same user once a day.
            if (user, content) not in self._sent:
                self._sent[(user, content)] = 1000 + len(self._sent)
                self.delivered.append({"userid": user, "content": content})
            return httpx.Response(200, json={"errcode": 0, "task_id": self._sent[(user, content)]})
        return httpx.Response(404, json={"errcode": 404, "errmsg": "no such API"})

    def inbound_request(
        self, sender: str, text: str, *, valid_signature: bool = True
    ) -> InboundRequest:
        timestamp = str(int(time.time() * 1000))
        secret = APP_SECRET if valid_signature else "someone-else-s-secret-0000000"
        body = {
            "msgtype": "text",
            "msgId": f"msg{abs(hash((sender, text))) % 10**8}",
            "senderStaffId": sender,
            "text": {"content": text},
        }
        return InboundRequest(
            method="POST",
            path="/channels/dingtalk/inbound",
            headers={"timestamp": timestamp, "sign": callback_sign(secret, timestamp)},
            body=json.dumps(body, ensure_ascii=False).encode(),
        )


SETTINGS = {"app_key": "ding-app-key", "app_secret": APP_SECRET, "agent_id": 2871}


class TestDingTalkContract(ChannelContract):
    channel_class = DingTalkChannel
    settings = SETTINGS
    address = USER

    def provider(self) -> FakeDingTalk:
        return FakeDingTalk()


async def test_an_expired_token_is_fetched_again_once() -> None:
    fake = FakeDingTalk()
    answers = iter([{"errcode": 42001, "errmsg": "access_token超时"}])

    def expiring(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("asyncsend_v2") and (answer := next(answers, None)):
            return httpx.Response(200, json=answer)
        return fake.handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(expiring)) as http:
        channel = DingTalkChannel(DingTalkChannel.load_config(**SETTINGS), http=http)
        receipt = await channel.send(TestDingTalkContract().message())
    assert receipt.provider_message_id
    assert fake.tokens_issued == 2
    assert len(fake.delivered) == 1


@pytest.fixture
def dingtalk(monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeDingTalk()
    with ProviderServer(fake.handler) as server:
        for name, value in {**SETTINGS, "api_url": server.url, "oapi_url": server.url}.items():
            monkeypatch.setenv(f"SUIFANG_CHANNEL_DINGTALK_{name.upper()}", str(value))
        yield fake


async def test_a_journey_reaches_the_patient_on_dingtalk_and_the_reply_comes_back(
    dingtalk: FakeDingTalk, enroll: Any, sent: SentMessages, api: httpx.AsyncClient
) -> None:
    patient = await enroll(
        pathway="pci",
        department="cardiology",
        contacts=[{"system": "dingtalk_userid", "value": USER}],
        preferred_channels=["dingtalk"],
    )
    assert await patient.next_touchpoint() is not None
    calls = await sent.wait_for("dingtalk")
    assert calls[0].receipt is not None, calls[0].error
    assert calls[0].message.address == USER
    assert dingtalk.delivered[0]["userid"] == USER
    assert calls[0].message.body in dingtalk.delivered[0]["content"]

    reply = dingtalk.inbound_request(USER, "伤口有点红，还有点痒")
    for _ in range(2):  # DingTalk resends a callback it thinks failed: one effect only
        answer = await api.post(
            "/channels/dingtalk/inbound", content=reply.body, headers=dict(reply.headers)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"msgtype": "empty"}
    stored = (await api.get("/inbound", params={"channel": "dingtalk"})).json()
    assert len(stored) == 1, stored
    assert stored[0]["patient_id"] == patient.enrollment.patient_id
    assert stored[0]["enrollment_id"] == patient.enrollment.enrollment_id
    assert "伤口有点红" in stored[0]["payload"]


async def test_a_user_dingtalk_does_not_know_is_not_tried_again(
    dingtalk: FakeDingTalk, enroll: Any, sent: SentMessages
) -> None:
    patient = await enroll(
        contacts=[{"system": "dingtalk_userid", "value": "left-the-hospital"}],
        preferred_channels=["dingtalk", "outbox"],
    )
    await patient.next_touchpoint()
    await sent.wait_for("outbox")
    assert [type(call.error).__name__ for call in sent.to("dingtalk")] == [
        "PermanentRecipientError"
    ]
    await patient.next_touchpoint()
    await sent.wait_for("outbox", count=2)
    assert len(sent.to("dingtalk")) == 1, "a failed contact must not be tried again"
