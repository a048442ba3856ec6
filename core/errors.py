"""Errors that reach a user: each carries a message that says what is wrong and where.

Surfaces (CLI, API) turn a :class:`SuifangError` into one clear line or a 4xx body;
anything else is a bug and is allowed to be loud.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "IdempotencyKeyReused",
    "NotFoundError",
    "StartupError",
    "SuifangError",
    "TryAgainLater",
    "ValidationFailed",
]


class SuifangError(Exception):
    """Base for errors whose message is meant for the person who caused them."""

    exit_code: int = 1


class ConfigurationError(SuifangError):
    """A setting, plugin configuration or template is invalid."""

    exit_code = 2


class ValidationFailed(SuifangError):
    """Input (a file, a request body, a CLI argument) was rejected."""

    exit_code = 2


class IdempotencyKeyReused(ValidationFailed):
    """An ``Idempotency-Key`` the caller already used for a different request (HTTP 422)."""

    code = "idempotency_key_reused"


class NotFoundError(SuifangError):
    """A named thing (pathway, patient, ticket, channel) does not exist."""

    exit_code = 3


class TryAgainLater(SuifangError):
    """Something the request needs is busy or recovering (a workflow that cannot answer a
    query right now): nothing was done; the same request later will work (HTTP 503)."""

    exit_code = 1


class StartupError(SuifangError):
    """The platform could not start: a port in use, a missing binary, a server down."""

    exit_code = 1
