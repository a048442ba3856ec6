"""The optional AI triage, against a local HTTP server that speaks the OpenAI chat API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.plugins import Plugins
from suifang.core.triage import TriageRequest
from suifang.tickets.assistant import AI_FLAG, AiTriageSettings, AssistedTriager, default_assistant
from suifang.tickets.knowledge import default_knowledge_base
from suifang.tickets.triage import classify


@dataclass
class ChatServer:
    """``POST /v1/chat/completions`` as OpenAI-compatible servers (vLLM, Qwen, DeepSeek)
    implement it: the reply's ``choices[0].message.content`` is what the test sets."""

    content: str = '{"urgency": "routine", "answer_id": null, "reason": ""}'
    status: int = 200
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                server.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if server.delay:
                    threading.Event().wait(server.delay)
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                reply = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": server.content},
                        }
                    ],
                }
                data = json.dumps(reply).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), server.handler())
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()


def assistant(chat: ChatServer, **settings: Any) -> AssistedTriager:
    return AssistedTriager(
        AiTriageSettings(
            enabled=True,
            base_url=chat.url,
            model="qwen2.5-14b-instruct",
            api_key="sk-local",
            timeout_seconds=settings.pop("timeout_seconds", 5.0),
        ),
        default_knowledge_base(),
    )


def refine(chat: ChatServer, text: str, **settings: Any) -> tuple[Any, Any]:
    request = TriageRequest(text=text, source=TicketSource.PATIENT_MESSAGE)
    local = classify(request)
    return local, assistant(chat, **settings).refine(request, local)


def test_the_model_is_asked_with_the_message_and_the_knowledge_base_candidates(
    chat: ChatServer,
) -> None:
    refine(chat, "支架术后多久可以洗澡？")
    (call,) = chat.requests
    assert call["auth"] == "Bearer sk-local"
    body = call["body"]
    assert body["model"] == "qwen2.5-14b-instruct"
    assert body["response_format"] == {"type": "json_object"}
    sent = json.loads(body["messages"][-1]["content"])
    assert sent["message"] == "支架术后多久可以洗澡？"
    assert "wound-showering" in [c["id"] for c in sent["candidates"]]


def test_it_can_raise_a_message_to_an_emergency(chat: ChatServer) -> None:
    chat.content = '{"urgency": "emergency", "answer_id": null, "reason": "possible MI"}'
    local, refined = refine(chat, "说不上来哪里不对劲，就是心里特别不踏实")
    assert local.urgency is not Priority.EMERGENCY
    assert (refined.urgency, refined.suggested_tier) == (Priority.EMERGENCY, Tier.L3)
    assert AI_FLAG in refined.red_flags
    assert refined.advice == ["general_emergency"]
    assert refined.knowledge_answer is None
    assert refined.sources[-1] == "ai:qwen2.5-14b-instruct"


def test_it_never_lowers_what_the_local_triage_found(chat: ChatServer) -> None:
    chat.content = '{"urgency": "routine", "answer_id": "wound-showering", "reason": "fine"}'
    local, refined = refine(chat, "胸口特别闷，出了一身冷汗")
    assert local.urgency is Priority.EMERGENCY
    assert refined.urgency is Priority.EMERGENCY
    assert refined.red_flags == local.red_flags
    assert refined.knowledge_answer is None


def test_it_answers_only_with_an_entry_it_was_offered(chat: ChatServer) -> None:
    text = "我家老爷子放完支架，下个月想坐飞机回老家，行不行啊"
    chat.content = '{"urgency": "routine", "answer_id": "no-such-entry", "reason": ""}'
    _, made_up = refine(chat, text)
    assert made_up.knowledge_answer is None or made_up.knowledge_answer.id != "no-such-entry"
    offered = json.loads(chat.requests[-1]["body"]["messages"][-1]["content"])["candidates"]
    chat.content = json.dumps({"urgency": "routine", "answer_id": offered[0]["id"]})
    _, answered = refine(chat, text)
    assert answered.knowledge_answer is not None
    assert answered.knowledge_answer.id == offered[0]["id"]
    assert answered.suggested_tier is Tier.L1
    entry = default_knowledge_base().entries[offered[0]["id"]]
    assert answered.knowledge_answer.answer == entry.answer["zh-CN"]  # the KB's words, not its


def test_it_can_withdraw_an_automatic_answer_to_a_person(chat: ChatServer) -> None:
    chat.content = '{"urgency": "routine", "answer_id": null, "reason": "ask a nurse"}'
    local, refined = refine(chat, "支架术后多久可以洗澡？")
    assert local.knowledge_answer is not None
    assert (refined.knowledge_answer, refined.suggested_tier) == (None, Tier.L2)


@pytest.mark.parametrize(
    "broken",
    [
        {"status": 500},
        {"content": "I think this is routine."},
        {"content": '{"urgency": "whenever"}'},
        {"delay": 2.0, "timeout_seconds": 0.5},
    ],
    ids=["server-error", "not-json", "wrong-json", "too-slow"],
)
def test_a_failing_model_leaves_the_local_result(chat: ChatServer, broken: dict[str, Any]) -> None:
    timeout = broken.pop("timeout_seconds", 5.0)
    for name, value in broken.items():
        setattr(chat, name, value)
    local, refined = refine(chat, "胸口特别闷，出了一身冷汗", timeout_seconds=timeout)
    assert refined == local


def test_the_builtin_plugin_asks_the_model_when_the_settings_turn_it_on(
    chat: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat.content = '{"urgency": "urgent", "answer_id": null, "reason": ""}'
    monkeypatch.setenv("SUIFANG_AI_TRIAGE_ENABLED", "true")
    monkeypatch.setenv("SUIFANG_AI_TRIAGE_BASE_URL", chat.url)
    monkeypatch.setenv("SUIFANG_AI_TRIAGE_MODEL", "local-vllm")
    default_assistant.cache_clear()
    try:
        result = Plugins.load(entrypoints=False).triage(
            TriageRequest(
                text="这两天总觉得哪里不舒服，说不上来", source=TicketSource.PATIENT_MESSAGE
            )
        )
    finally:
        default_assistant.cache_clear()
    assert chat.requests, "the model was not asked"
    assert result.urgency is Priority.URGENT
    assert AI_FLAG in result.warning_signs


def test_off_by_default_nothing_leaves_the_hospital(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUIFANG_AI_TRIAGE_ENABLED", raising=False)
    default_assistant.cache_clear()
    try:
        assert default_assistant() is None
    finally:
        default_assistant.cache_clear()
