"""The integrator guide stays true: every hook is documented and tested, every public name of
the plugin API has its reference, and every example in the guide runs as written."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import httpx
import pdoc
import pdoc.doc
import pytest

from suifang import sdk
from suifang import testing as kit
from suifang.core import hooks
from suifang.core.channels import (
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
)
from suifang.core.plugins import Plugins
from suifang.core.risk import RiskInput
from suifang.core.security.signing import sign_body
from suifang.core.triage import RoutingRequest
from suifang.testing import channel_contract, provider_server

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


# --------------------------------------------------------------------------- the public API


def _undocumented(module: types.ModuleType) -> list[str]:
    """Names in ``__all__`` (and the public members of its classes) pdoc finds no docs for."""
    documented = pdoc.doc.Module(module)
    missing = []
    for name in module.__all__:
        member = documented.get(name)
        if member is None or not member.docstring.strip():
            missing.append(name)
            continue
        if isinstance(member, pdoc.doc.Class):
            missing.extend(
                f"{name}.{own.name}"
                for own in member.own_members
                if not own.name.startswith("_") and not own.docstring.strip()
            )
    return missing


@pytest.mark.parametrize(
    "module", [sdk, kit, channel_contract, provider_server], ids=lambda m: m.__name__
)
def test_every_public_name_is_documented(module: types.ModuleType) -> None:
    """Issue 22: an integrator reads the reference, not the source."""
    assert module.__all__
    assert _undocumented(module) == []


def test_the_sdk_is_what_a_plugin_needs() -> None:
    needed = {"Channel", "ChannelConfig", "OutboundMessage", "DeliveryReceipt", "InboundMessage"}
    needed |= {"InboundRequest", "InboundRejected", "PermanentRecipientError", "hookimpl"}
    assert needed <= set(sdk.__all__)
    assert all(getattr(sdk, name, None) is not None for name in sdk.__all__)


def test_the_reference_builds_with_every_public_name(tmp_path: Path) -> None:
    """What .ci/run builds: pdoc's HTML, every name of ``suifang.sdk`` with its own anchor."""
    pdoc.pdoc("suifang.sdk", "suifang.testing", output_directory=tmp_path)
    page = (tmp_path / "suifang" / "sdk.html").read_text(encoding="utf-8")
    for name in sdk.__all__:
        assert f'id="{name}"' in page, name
    assert "The rendered text, to send as it is." in page  # field docs are rendered


# --------------------------------------------------------------------------- the guide's code


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, re.S)


def _block(language: str, marker: str) -> str:
    (found,) = [block for block in _blocks(language) if marker in block]
    return found


def test_the_guide_s_package_and_its_tests_pass_as_written(tmp_path: Path) -> None:
    """The guide's pyproject, channel module and both test modules, as files, run by pytest
    in a fresh process: the contract suite and the test through the platform pass."""
    (tmp_path / "pyproject.toml").write_text(_block("toml", "[project]"), encoding="utf-8")
    (tmp_path / "suifang_hospital_sms.py").write_text(
        _block("python", "class HospitalSms"), encoding="utf-8"
    )
    (tmp_path / "tests").mkdir()
    for name in ("test_hospital_sms", "test_through_the_platform"):
        (tmp_path / "tests" / f"{name}.py").write_text(
            _block("python", f"# tests/{name}.py"), encoding="utf-8"
        )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed, result.stdout[-2000:]
    assert int(passed.group(1)) >= 14, result.stdout[-2000:]
    assert "failed" not in result.stdout.splitlines()[-1]


def _run_block(marker: str) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "guide_example", "__file__": str(ROOT / "x.py")}
    exec(compile(_block("python", marker), "docs/plugins.md", "exec"), namespace)  # noqa: S102
    return namespace


def test_the_guide_s_error_classification_example_classifies() -> None:
    raise_for_answer = _run_block("def raise_for_answer")["raise_for_answer"]
    with pytest.raises(PermanentRecipientError):
        raise_for_answer(httpx.Response(400, json={"code": "21610"}))  # type: ignore[operator]
    with pytest.raises(TransientChannelError):
        raise_for_answer(httpx.Response(503, json={}))  # type: ignore[operator]
    with pytest.raises(PermanentChannelError):
        raise_for_answer(httpx.Response(401, json={}))  # type: ignore[operator]
    assert raise_for_answer(httpx.Response(200, json={"id": "1"})) is None  # type: ignore[operator]


def test_the_guide_s_pathway_risk_and_routing_plugins_answer() -> None:
    registered: list[object] = []
    pathways = _run_block("def suifang_register_pathways")
    pathways["suifang_register_pathways"](registered.append)  # type: ignore[operator]
    assert registered == [ROOT / "pathways"]
    hooks_ = _run_block("def suifang_assess_risk")
    frequent = RiskInput(
        discharged_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        emergency_admission=True,
        ed_visits_6_months=3,
    )
    assessed = hooks_["suifang_assess_risk"](frequent)  # type: ignore[operator]
    assert assessed.tier == sdk.RiskTier.HIGH
    assert (
        hooks_["suifang_assess_risk"](frequent.model_copy(update={"ed_visits_6_months": 0})) is None
    )  # type: ignore[operator]
    parking = RoutingRequest(
        category="parking", clinical=False, source="complaint", tier="L2", priority="routine"
    )
    assert hooks_["suifang_route_ticket"](parking) == "security"  # type: ignore[operator]
    pills = parking.model_copy(update={"category": "medication", "patient_tags": ["elderly"]})
    assert hooks_["suifang_route_ticket"](pills) == "geriatrics"  # type: ignore[operator]
    younger = pills.model_copy(update={"patient_tags": []})
    assert hooks_["suifang_route_ticket"](younger) is None  # type: ignore[operator]


# --------------------------------------------------------------------------- docs/channels


BUILT_IN_CHANNELS = sorted(Plugins.load(entrypoints=False).channel_classes().items())


@pytest.mark.parametrize(
    ("name", "channel"), BUILT_IN_CHANNELS, ids=[n for n, _ in BUILT_IN_CHANNELS]
)
def test_every_built_in_channel_has_a_page_with_every_setting(name: str, channel: type) -> None:
    """Issue 22: a channel's settings and provider protocol are in docs/channels/, not only in
    its module's docstring — every ``SUIFANG_CHANNEL_*`` variable it reads is on its page."""
    page = ROOT / "docs" / "channels" / f"{name}.md"
    assert page.exists(), f"docs/channels/{name}.md is missing"
    text = page.read_text(encoding="utf-8")
    missing = [variable for variable in channel.settings_view() if variable not in text]
    assert missing == [], f"{page.name} does not name {missing}"
    index = (ROOT / "docs" / "channels" / "README.md").read_text(encoding="utf-8")
    assert f"({name}.md)" in index, f"docs/channels/README.md does not link {name}.md"
