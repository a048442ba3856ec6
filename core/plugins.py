"""The plugin manager, and the typed facade the rest of suifang uses instead of ``pm.hook``.

Every plugin comes from the ``suifang`` entry-point group, loaded by pluggy. suifang's own
(the built-in channels and pathways, the risk score, the ticket triage) are declared in its
``pyproject.toml`` exactly as a hospital's package declares its own: the kernel names none of
them. Any plugin, built-in or not, can be blocked by name with ``SUIFANG_DISABLED_PLUGINS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
from collections.abc import Iterable, Iterator
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
    "DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "Plugins",
    "builtin_plugin_names",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "suifang"
DISTRIBUTION = "suifang"
"""The distribution whose entry points are the built-in plugins."""


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool
    channels: tuple[str, ...] = ()
    """The channels it registers (one plugin may register several: sms and sms-aliyun)."""


def _is_builtin(distribution: importlib.metadata.Distribution | None) -> bool:
    return distribution is not None and distribution.metadata["Name"] == DISTRIBUTION


def _entry_points(*, builtins: bool, others: bool) -> Iterator[importlib.metadata.EntryPoint]:
    """The group's entry points, suifang's own first: a plugin registered later is asked first
    by a first-answer-wins hook, so an installed plugin overrides a built-in one."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    if builtins:
        yield from (ep for ep in found if _is_builtin(ep.dist))
    if others:
        yield from (ep for ep in found if not _is_builtin(ep.dist))


def builtin_plugin_names() -> list[str]:
    """The names of suifang's own plugins (what ``SUIFANG_DISABLED_PLUGINS`` can block)."""
    return [ep.name for ep in _entry_points(builtins=True, others=False)]


def _register(pm: pluggy.PluginManager, plugin: object, name: str, origin: str) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise ConfigurationError(f"plugin {name!r} ({origin}) is invalid: {exc}") from None


def _load(pm: pluggy.PluginManager, entry_point: importlib.metadata.EntryPoint) -> None:
    origin = f"entry point {entry_point.value}"
    if entry_point.dist is not None:
        origin += f" from {entry_point.dist.name} {entry_point.dist.version}"
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=entry_point.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise ConfigurationError(
            f"plugin {entry_point.name!r} ({origin}) is invalid: {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 -- any import error of a third-party plugin
        raise ConfigurationError(
            f"plugin {entry_point.name!r} ({origin}) failed to load: {type(exc).__name__}: {exc}"
        ) from None


def get_plugin_manager(
    *,
    disabled: Iterable[str] = (),
    builtins: bool = True,
    entrypoints: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> pluggy.PluginManager:
    """A plugin manager with suifang's hookspecs, the built-ins and the installed plugins.

    Tests pass ``entrypoints=False`` (suifang's own plugins only) or ``builtins=False`` and
    ``extra=[("name", module_or_object)]`` to build one with exactly the plugins they want.
    """
    pm = pluggy.PluginManager(hooks.PROJECT_NAME)
    pm.add_hookspecs(hooks)
    for name in disabled:
        pm.set_blocked(name)
    for entry_point in _entry_points(builtins=builtins, others=entrypoints):
        _load(pm, entry_point)
    for name, plugin in extra:
        if not pm.is_blocked(name):
            _register(pm, plugin, name, "given")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"plugin implements a hook suifang does not have: {exc}") from None
    return pm


class Plugins:
    """Typed access to what the plugins provide. Build once per process and pass it down."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
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
        distributions = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist = distributions.get(id(plugin))
            hook_names = tuple(
                sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ())
            )
            module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
            infos.append(
                PluginInfo(
                    name=name,
                    module=module,
                    distribution=dist.metadata["Name"] if dist else "-",
                    version=dist.version if dist else "-",
                    hooks=hook_names,
                    builtin=_is_builtin(dist),
                    channels=self._channels_of(plugin),
                )
            )
        return infos

    def _channels_of(self, plugin: object) -> tuple[str, ...]:
        names: list[str] = []
        for impl in self.pm.hook.suifang_register_channels.get_hookimpls():
            if impl.plugin is plugin:
                impl.function(register=lambda cls: names.append(getattr(cls, "name", "?")))
        return tuple(names)
