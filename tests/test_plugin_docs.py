"""The integrator guide stays true: every hook is documented and tested, and its example runs."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import httpx
import pytest

from suifang.core import hooks
from suifang.core.channels import InboundRequest, OutboundMessage, PermanentChannelError
from suifang.core.plugins import Plugins
from suifang.core.security.signing import sign_body

ROOT = Path(__file__).parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
HOOKS = sorted(name for name in dir(hooks) if name.startswith("suifang_"))


def test_there_are_hooks() -> None:
    assert {"suifang_register_channels", "suifang_register_pathways", "suifang_triage"} <= set(
        HOOKS
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    assert f"`{hook}(" in GUIDE, f"{hook} is missing from docs/plugins.md"
    assert getattr(hooks, hook).__doc__, f"{hook} has no docstring in core/hooks.py"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    tests = [
        path
        for path in (ROOT / "tests").rglob("test_*.py")
        if path.name != Path(__file__).name and hook in path.read_text(encoding="utf-8")
    ]
    assert tests, f"no test mentions {hook}"


def _example_module() -> types.ModuleType:
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", GUIDE, re.S) if "class HospitalSms" in b
    )
    module = types.ModuleType("suifang_hospital_sms")
    sys.modules[module.__name__] = module  # pydantic resolves the annotations through it
    exec(compile(block, "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102 -- our own doc
    return module


async def test_the_guides_example_channel_works_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _example_module()
    plugins = Plugins.load(entrypoints=False, builtins=False, extra=[("hospital-sms", module)])
    channel_class = plugins.channel_classes()["hospital-sms"]
    monkeypatch.setenv("SUIFANG_CHANNEL_HOSPITAL_SMS_URL", "https://gw.example/send")
    monkeypatch.setenv("SUIFANG_CHANNEL_HOSPITAL_SMS_TOKEN", "t0k3n")
    monkeypatch.setenv("SUIFANG_CHANNEL_HOSPITAL_SMS_CALLBACK_SECRETS", "a-secret-of-sixteen-plus")
    received: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        received.append(request)
        if b"000000" in request.content:
            return httpx.Response(400, json={"error": "bad number"})
        return httpx.Response(200, json={"id": "gw-1"})

    channel = channel_class(
        channel_class.load_config(), http=httpx.AsyncClient(transport=httpx.MockTransport(gateway))
    )
    message = OutboundMessage(
        idempotency_key="k1", patient_id=1, address="13800138000", body="您好"
    )
    receipt = await channel.send(message)
    assert receipt.provider_message_id == "gw-1"
    assert received[0].headers["Idempotency-Key"] == "k1"
    with pytest.raises(PermanentChannelError):
        await channel.send(message.model_copy(update={"address": "13000000000"}))

    body = '{"from": "13800138000", "text": "不疼了"}'.encode()
    signed = sign_body(body, b"a-secret-of-sixteen-plus")
    items = await channel.parse_inbound(
        InboundRequest(body=body, headers={"X-Suifang-Signature": signed})
    )
    assert [(i.sender, i.text) for i in items] == [("13800138000", "不疼了")]
