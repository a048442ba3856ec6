"""suifang's public plugin API: everything a plugin imports, from one place.

A plugin package imports from ``suifang.sdk`` only; the modules these names come from
(``suifang.core.*``) may move between releases, this module's names may not. The reference
(``pdoc``-generated, built by CI) documents every name below; the guide is
``docs/plugins.md``, each built-in channel's settings and provider protocol are in
``docs/channels/``, and the test kit is the ``suifang.testing`` pytest plugin.

Channels
    :class:`Channel` (subclass it), :class:`ChannelConfig` (its settings),
    :class:`OutboundMessage` → :class:`DeliveryReceipt`; a provider's webhook arrives as an
    :class:`InboundRequest` and becomes :class:`InboundMessage` / :class:`DeliveryStatusUpdate`
    items, or :class:`InboundRejected`. Failures raise :class:`PermanentChannelError`,
    :class:`PermanentRecipientError` or :class:`TransientChannelError`.
HTTP helpers
    :func:`send_request`, :func:`error_for_status` and friends classify a provider's answer
    the way the delivery cascade expects; :class:`WebhookSigner` signs and verifies
    suifang's own webhook signature.
Hooks
    :data:`hookimpl` marks a plugin's hook functions; the hooks are ``suifang_register_channels``,
    ``suifang_register_pathways``, ``suifang_assess_risk``, ``suifang_triage`` and
    ``suifang_route_ticket`` (``docs/plugins.md``), exchanging the models below.
"""

from __future__ import annotations

from suifang.core import channels as _channels
from suifang.core import hooks as _hooks
from suifang.core import pathways as _pathways
from suifang.core.channel_http import (
    error_for_status,
    is_retryable_status,
    retry_after,
    send_request,
    transient_error,
)
from suifang.core.channels import (
    AddressKind,
    Channel,
    ChannelConfig,
    ChannelError,
    DeliveryReceipt,
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
    fingerprint,
)
from suifang.core.enums import Priority, RiskTier, TicketSource, Tier
from suifang.core.risk import RiskAssessment, RiskInput
from suifang.core.security import signing as _signing
from suifang.core.security.signing import WebhookSigner, sign_body
from suifang.core.triage import KnowledgeAnswer, RoutingRequest, TriageRequest, TriageResult

__all__ = [
    "SIGNATURE_HEADER",
    "AddressKind",
    "Channel",
    "ChannelConfig",
    "ChannelError",
    "ChannelRegistry",
    "DeliveryReceipt",
    "DeliveryStatusUpdate",
    "InboundMessage",
    "InboundRejected",
    "InboundRequest",
    "KnowledgeAnswer",
    "OutboundMessage",
    "PathwayRegistry",
    "PermanentChannelError",
    "PermanentRecipientError",
    "Priority",
    "RiskAssessment",
    "RiskInput",
    "RiskTier",
    "RoutingRequest",
    "TicketSource",
    "Tier",
    "TransientChannelError",
    "TriageRequest",
    "TriageResult",
    "WebhookSigner",
    "error_for_status",
    "fingerprint",
    "hookimpl",
    "is_retryable_status",
    "retry_after",
    "send_request",
    "sign_body",
    "transient_error",
]

hookimpl = _hooks.hookimpl
"""Marks a plugin's hook functions: ``@hookimpl`` above a function named like a hook
(``def suifang_register_channels(register): register(MyChannel)``). pluggy's options apply
(``@hookimpl(tryfirst=True)`` to be asked before the built-ins)."""

ChannelRegistry = _channels.ChannelRegistry
"""The ``register`` that ``suifang_register_channels(register)`` receives: call it once with
each :class:`Channel` subclass the plugin provides."""

PathwayRegistry = _pathways.PathwayRegistry
"""The ``register`` that ``suifang_register_pathways(register)`` receives: call it with a
``pathlib.Path`` to a folder of pathway YAML files or to one file, or with a parsed template."""

SIGNATURE_HEADER = _signing.SIGNATURE_HEADER
"""``X-Suifang-Signature``: the header of suifang's own webhook signature
(``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``), which :class:`WebhookSigner`
writes and checks."""
