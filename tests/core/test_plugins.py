from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from suifang.core.channels import Channel, DeliveryReceipt, OutboundMessage
from suifang.core.errors import ConfigurationError
from suifang.core.hooks import hookimpl
from suifang.core.plugins import Plugins, builtin_plugin_names

EXAMPLE_PLUGIN = Path(__file__).parents[1] / "plugins" / "example_plugin"


def _plugin_module(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, function)
    return module


class _EchoChannel(Channel):
    name: ClassVar[str] = "outbox"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        return DeliveryReceipt()


def test_builtins_are_registered_like_any_plugin() -> None:
    plugins = Plugins.load(entrypoints=False)
    described = {info.name: info for info in plugins.describe()}
    assert set(builtin_plugin_names()) == {
        "outbox",
        "email",
        "sms",
        "wechat",
        "voice",
        "webhook",
        "builtin-pathways",
        "risk",
        "tickets",
    }
    assert set(builtin_plugin_names()) <= set(described)
    assert described["outbox"].distribution == "suifang"
    assert described["outbox"].builtin
    assert described["outbox"].hooks == ("suifang_register_channels",)
    assert "outbox" in plugins.channel_classes()
    assert any(path.name == "pathways" for path in plugins.pathway_sources())


def test_blocked_plugins_are_not_loaded() -> None:
    plugins = Plugins.load(entrypoints=False, disabled=["outbox"])
    assert "outbox" not in plugins.channel_classes()
    assert "outbox" not in {info.name for info in plugins.describe()}


def test_an_inline_plugin_adds_a_channel() -> None:
    class PagerChannel(_EchoChannel):
        name: ClassVar[str] = "pager"

    @hookimpl
    def suifang_register_channels(register):  # type: ignore[no-untyped-def]
        register(PagerChannel)

    plugin = _plugin_module("pager_plugin", suifang_register_channels=suifang_register_channels)
    plugins = Plugins.load(entrypoints=False, extra=[("pager", plugin)])
    assert plugins.channel_classes()["pager"] is PagerChannel


def test_a_plugin_registers_pathways_from_its_own_folder(tmp_path: Path) -> None:
    source = (Path(__file__).parents[2] / "templates" / "pathways" / "pci.yaml").read_text("utf-8")
    folder = tmp_path / "pathways"
    folder.mkdir()
    (folder / "cardiac-rehab.yaml").write_text(
        source.replace("id: pci", "id: cardiac-rehab").replace("priority: 10", "priority: 20"),
        encoding="utf-8",
    )

    @hookimpl
    def suifang_register_pathways(register):  # type: ignore[no-untyped-def]
        register(folder)

    plugin = _plugin_module("rehab", suifang_register_pathways=suifang_register_pathways)
    catalog = Plugins.load(entrypoints=False, extra=[("rehab", plugin)]).pathway_catalog()
    assert "cardiac-rehab" in catalog.ids()
    assert "pci" in catalog.ids()  # the built-ins are still there
    assert catalog.origin(catalog.get("cardiac-rehab")).endswith("cardiac-rehab.yaml")


def test_two_channels_with_one_name_are_refused() -> None:
    @hookimpl
    def suifang_register_channels(register):  # type: ignore[no-untyped-def]
        register(_EchoChannel)

    plugin = _plugin_module("dupe", suifang_register_channels=suifang_register_channels)
    plugins = Plugins.load(entrypoints=False, extra=[("dupe", plugin)])
    with pytest.raises(ConfigurationError, match="two channels are named 'outbox'"):
        plugins.channel_classes()


def test_registering_something_that_is_not_a_channel_is_refused() -> None:
    @hookimpl
    def suifang_register_channels(register):  # type: ignore[no-untyped-def]
        register(object)

    plugin = _plugin_module("junk", suifang_register_channels=suifang_register_channels)
    with pytest.raises(ConfigurationError, match="not a Channel subclass"):
        Plugins.load(entrypoints=False, extra=[("junk", plugin)]).channel_classes()


def test_a_misspelled_hook_is_a_clear_error() -> None:
    @hookimpl
    def suifang_register_channel(register):  # type: ignore[no-untyped-def]
        return None

    plugin = _plugin_module("typo", suifang_register_channel=suifang_register_channel)
    with pytest.raises(ConfigurationError, match="suifang_register_channel"):
        Plugins.load(entrypoints=False, extra=[("typo", plugin)])


def test_a_hook_with_a_wrong_signature_names_the_plugin() -> None:
    @hookimpl
    def suifang_register_channels(register, extra_argument):  # type: ignore[no-untyped-def]
        return None

    plugin = _plugin_module("badsig", suifang_register_channels=suifang_register_channels)
    with pytest.raises(ConfigurationError, match="plugin 'badsig'"):
        Plugins.load(entrypoints=False, extra=[("badsig", plugin)])


@pytest.fixture(scope="module")
def installed_example_plugin() -> object:
    """pip-install the example plugin from tests/ into this environment, uninstall afterwards."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", str(EXAMPLE_PLUGIN)],
        check=True,
        capture_output=True,
    )
    try:
        yield
    finally:
        subprocess.run(
            [*pip, "uninstall", "-y", "suifang-example-plugin"], check=True, capture_output=True
        )


@pytest.mark.slow
@pytest.mark.usefixtures("installed_example_plugin")
def test_an_installed_plugin_is_discovered_through_its_entry_point(tmp_path: Path) -> None:
    def suifang(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "suifang.core.cli", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", **env},
        )

    listed = suifang("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    example = next(p for p in json.loads(listed.stdout) if p["name"] == "example")
    assert example["distribution"] == "suifang-example-plugin"
    assert example["version"] == "0.3.0"
    assert example["hooks"] == ["suifang_register_channels"]
    assert example["builtin"] is False

    sms = next(p for p in json.loads(listed.stdout) if p["name"] == "sms")
    assert sms["channels"] == ["sms", "sms-aliyun"]  # one plugin, two channels
    assert example["channels"]  # what the example plugin registers is named

    table = suifang("plugins").stdout
    assert "suifang-example-plugin" in table
    assert "outbox" in table
    assert "sms, sms-aliyun" in table

    blocked = suifang("plugins", "--json", SUIFANG_DISABLED_PLUGINS="example")
    assert "example" not in {p["name"] for p in json.loads(blocked.stdout)}


def test_an_installed_plugin_that_fails_to_import_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pluggy loads the entry points; suifang still names the plugin and its distribution."""
    (tmp_path / "suifang_broken_plugin.py").write_text(
        "raise RuntimeError('no licence key')\n", encoding="utf-8"
    )
    dist_info = tmp_path / "suifang_broken-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: suifang-broken\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        "[suifang]\nbroken = suifang_broken_plugin\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError) as refused:
        Plugins.load()
    assert str(refused.value) == (
        "plugin 'broken' (entry point suifang_broken_plugin from suifang-broken 1.0) "
        "failed to load: RuntimeError: no licence key"
    )
    # Blocking it by name is the way out, and then nothing of it is imported.
    assert "broken" not in {info.name for info in Plugins.load(disabled=["broken"]).describe()}
