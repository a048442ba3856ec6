"""The plugin contract: hook specifications and the ``hookimpl`` marker plugins use.

Every extension point of suifang is one hook below. A plugin is any module or object with
``@hookimpl``-decorated functions named like these specs, registered through the ``suifang``
entry-point group (the built-ins too, in suifang's own ``pyproject.toml``)::

    from suifang.core.hooks import hookimpl

    @hookimpl
    def suifang_register_channels(register):
        register(MyGatewayChannel)

The rest of suifang never calls ``pm.hook.*`` directly: it goes through the typed facade
:class:`suifang.core.plugins.Plugins`.
"""

from __future__ import annotations

import pluggy

from suifang.core.channels import ChannelRegistry
from suifang.core.pathways import PathwayRegistry
from suifang.core.risk import RiskAssessment, RiskInput
from suifang.core.triage import RoutingRequest, TriageRequest, TriageResult

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "suifang"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def suifang_register_channels(register: ChannelRegistry) -> None:
    """Register channel classes: ``register(SmsChannel)``.

    Each class implements :class:`suifang.core.channels.Channel`. Called once when the
    plugin manager is built; every plugin's registrations are collected. Two channels with
    the same ``name`` are a configuration error.
    """


@hookspec
def suifang_register_pathways(register: PathwayRegistry) -> None:
    """Register pathway templates: ``register(path_to_yaml)`` or ``register(PathwayTemplate(...))``.

    A path may be a single YAML file or a directory (every ``*.yaml`` under it). Templates
    are validated when registered; an invalid one is refused with its file, field and reason.
    Registering a second template with the same ``id`` and ``version`` is an error; a higher
    version of the same ``id`` becomes the one new journeys use.
    """


@hookspec(firstresult=True)
def suifang_assess_risk(subject: RiskInput) -> RiskAssessment | None:
    """Stratify a discharged patient's readmission risk at enrollment.

    The first non-None answer wins; plugins registered later are asked first, so a hospital's
    own model overrides the built-in LACE score. The tier picks the pathway variant; the
    groups (``elderly``, ``child``, ``pregnant``) pick special-group variants.
    """


@hookspec(firstresult=True)
def suifang_triage(request: TriageRequest) -> TriageResult | None:
    """Classify a ticket's text: category, urgency, red flags, and a routine answer if one fits.

    The first non-None answer wins. Must not call the network from a worker's hot path
    without a timeout; the built-in classifier is local and deterministic.
    """


@hookspec(firstresult=True)
def suifang_route_ticket(request: RoutingRequest) -> str | None:
    """Pick the department code that owns a ticket; the first non-None answer wins.

    Return None to fall through to the routing table (category → department); clinical
    tickets default to the patient's discharge department.
    """
