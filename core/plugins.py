"""The plugin manager, and the typed facade the rest of suifang uses instead of ``pm.hook``.

Built-in plugins are listed once, in :data:`DEFAULT_PLUGINS`, and registered exactly like
third-party ones, which come from the ``suifang`` entry-point group. Any plugin, built-in or
not, can be blocked by name with ``SUIFANG_DISABLED_PLUGINS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.metadata
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pluggy

from suifang.core import hooks
from suifang.core.channels import Channel
from suifang.core.errors import ConfigurationError
from suifang.core.pathways import PathwayCatalog, PathwaySource
from suifang.core.risk import RiskAssessment, RiskInput
from suifang.core.triage import RoutingRequest, TriageRequest, TriageResult

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginManager",
    "Plugins",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "suifang"

#: Built-in plugins: name → module. The name is what ``SUIFANG_DISABLED_PLUGINS`` blocks.
DEFAULT_PLUGINS: dict[str, str] = {
    "outbox": "suifang.plugins.channels.outbox",
    "email": "suifang.plugins.channels.email",
    "sms": "suifang.plugins.channels.sms",
    "wechat": "suifang.plugins.channels.wechat",
    "voice": "suifang.plugins.channels.voice",
    "webhook": "suifang.plugins.channels.webhook",
    "builtin-pathways": "suifang.plugins.pathways.builtin",
    "risk": "suifang.workflows.risk",
    "tickets": "suifang.tickets.builtin",
}


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__(hooks.PROJECT_NAME)
        self.distributions: dict[str, importlib.metadata.Distribution] = {}


def _register(pm: pluggy.PluginManager, plugin: object, name: str, origin: str) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise ConfigurationError(f"plugin {name!r} ({origin}) is invalid: {exc}") from None


def get_plugin_manager(
    *,
    disabled: Iterable[str] = (),
    builtins: bool = True,
    entrypoints: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> PluginManager:
    """A plugin manager with suifang's hookspecs, the built-ins and the installed plugins.

    Tests pass ``entrypoints=False`` and ``extra=[("name", module_or_object)]`` to build one
    with exactly the plugins they want.
    """
    pm = PluginManager()
    pm.add_hookspecs(hooks)
    for name in disabled:
        pm.set_blocked(name)
    if builtins:
        for name, module_name in DEFAULT_PLUGINS.items():
            if pm.is_blocked(name):
                continue
            _register(pm, importlib.import_module(module_name), name, module_name)
    if entrypoints:
        _load_entrypoints(pm)
    for name, plugin in extra:
        if not pm.is_blocked(name):
            _register(pm, plugin, name, "given")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"plugin implements a hook suifang does not have: {exc}") from None
    return pm


def _load_entrypoints(pm: PluginManager) -> None:
    seen: set[str] = set()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in seen or pm.is_blocked(entry_point.name):
            continue
        seen.add(entry_point.name)
        origin = f"entry point {entry_point.value}"
        if entry_point.dist is not None:
            origin += f" from {entry_point.dist.name} {entry_point.dist.version}"
        try:
            plugin = entry_point.load()
        except Exception as exc:  # noqa: BLE001 -- any import error of a third-party plugin
            raise ConfigurationError(
                f"plugin {entry_point.name!r} ({origin}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        _register(pm, plugin, entry_point.name, origin)
        if entry_point.dist is not None:
            pm.distributions[entry_point.name] = entry_point.dist


class Plugins:
    """Typed access to what the plugins provide. Build once per process and pass it down."""

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm

    @classmethod
    def load(cls, *, disabled: Iterable[str] = (), **kwargs: Any) -> Plugins:
        return cls(get_plugin_manager(disabled=disabled, **kwargs))

    def channel_classes(self) -> dict[str, type[Channel]]:
        """Every registered channel class by name; a duplicate name is a configuration error."""
        found: dict[str, type[Channel]] = {}

        def register(channel_class: type[Channel]) -> None:
            if not (isinstance(channel_class, type) and issubclass(channel_class, Channel)):
                raise ConfigurationError(
                    f"suifang_register_channels got {channel_class!r}, "
                    "which is not a Channel subclass"
                )
            name = getattr(channel_class, "name", None)
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"channel class {channel_class.__qualname__} has no name")
            if name in found and found[name] is not channel_class:
                raise ConfigurationError(
                    f"two channels are named {name!r}: {found[name].__module__} and "
                    f"{channel_class.__module__}; block one with SUIFANG_DISABLED_PLUGINS"
                )
            found[name] = channel_class

        self.pm.hook.suifang_register_channels(register=register)
        return found

    def pathway_sources(self) -> list[PathwaySource]:
        """Every pathway template file, folder or object the plugins registered, in order."""
        sources: list[PathwaySource] = []
        self.pm.hook.suifang_register_pathways(register=sources.append)
        return sources

    def pathway_catalog(self) -> PathwayCatalog:
        """Load and validate every registered template (errors name the file and line)."""
        catalog = PathwayCatalog()
        for source in self.pathway_sources():
            catalog.add_source(source)
        return catalog

    def assess_risk(self, subject: RiskInput) -> RiskAssessment:
        """The readmission-risk assessment of the first plugin that answers."""
        assessment = self.pm.hook.suifang_assess_risk(subject=subject)
        if assessment is None:
            raise ConfigurationError(
                "no plugin assessed risk (is the built-in risk plugin blocked?)"
            )
        return RiskAssessment.model_validate(assessment)

    def triage(self, request: TriageRequest) -> TriageResult:
        """The triage of the first plugin that answers."""
        result = self.pm.hook.suifang_triage(request=request)
        if result is None:
            raise ConfigurationError("no plugin triaged (is the built-in triage plugin blocked?)")
        return TriageResult.model_validate(result)

    async def triage_async(self, request: TriageRequest) -> TriageResult:
        """:meth:`triage` off the event loop: a triage plugin may call the network (the AI
        assistant does), and an activity or a request handler must not block on it."""
        return await asyncio.to_thread(self.triage, request)

    def route_ticket(self, request: RoutingRequest) -> str | None:
        """A plugin's choice of department, or None to use the routing table."""
        department = self.pm.hook.suifang_route_ticket(request=request)
        return department if isinstance(department, str) and department else None

    def describe(self) -> list[PluginInfo]:
        """What ``suifang plugins`` prints: every loaded plugin, its origin and hooks."""
        own = importlib.metadata.distribution("suifang")
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist = self.pm.distributions.get(name)
            builtin = name in DEFAULT_PLUGINS and dist is None
            hook_names = tuple(
                sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ())
            )
            module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
            infos.append(
                PluginInfo(
                    name=name,
                    module=module,
                    distribution=dist.metadata["Name"]
                    if dist
                    else (own.metadata["Name"] if builtin else "-"),
                    version=dist.version if dist else (own.version if builtin else "-"),
                    hooks=hook_names,
                    builtin=builtin,
                )
            )
        return infos
