from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from suifang.core.config import load_settings
from suifang.core.errors import ConfigurationError


def test_defaults_match_the_documented_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_DIR", "DATABASE_URL", "TEMPORAL_ADDRESS", "API_PORT", "LOCALE", "TIMEZONE"):
        monkeypatch.delenv(f"SUIFANG_{name}", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite:///var/suifang.db"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.temporal_ui_port == 8233
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.locale == "zh-CN"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.telemetry_exporter == "none"


def test_environment_overrides_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUIFANG_API_PORT", "9100")
    monkeypatch.setenv("SUIFANG_DATA_DIR", "/srv/suifang")
    monkeypatch.setenv("SUIFANG_DISABLED_PLUGINS", "sms, wechat,")
    settings = load_settings()
    assert settings.api_port == 9100
    assert settings.database_url == "sqlite:////srv/suifang/suifang.db"
    assert settings.disabled_plugins == ["sms", "wechat"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SUIFANG_API_PORT", "eighty", "SUIFANG_API_PORT: Input should be a valid integer"),
        (
            "SUIFANG_API_PORT",
            "70000",
            "SUIFANG_API_PORT: Input should be less than or equal to 65535",
        ),
        ("SUIFANG_TEMPORAL_ADDRESS", "localhost", "SUIFANG_TEMPORAL_ADDRESS: expected host:port"),
        (
            "SUIFANG_WORKER_MAX_CACHED_WORKFLOWS",
            "-5",
            "SUIFANG_WORKER_MAX_CACHED_WORKFLOWS: Input should be greater than or equal to 0",
        ),
        (
            "SUIFANG_DATABASE_STATEMENT_TIMEOUT",
            "-1",
            "SUIFANG_DATABASE_STATEMENT_TIMEOUT: Input should be greater than or equal to 0",
        ),
        (
            "SUIFANG_TEMPORAL_CONNECT_WAIT",
            "soon",
            "SUIFANG_TEMPORAL_CONNECT_WAIT: Input should be a valid number",
        ),
        (
            "SUIFANG_TIMEZONE",
            "Mars/Olympus",
            "SUIFANG_TIMEZONE: unknown IANA timezone 'Mars/Olympus'",
        ),
        ("SUIFANG_TIMEZONE", "Asia", "SUIFANG_TIMEZONE: unknown IANA timezone 'Asia'; that is"),
        ("SUIFANG_TIMEZONE", "../etc/passwd", "unknown IANA timezone '../etc/passwd'"),
        ("SUIFANG_TIMEZONE", "UTC/../../x", "unknown IANA timezone 'UTC/../../x'"),
        ("SUIFANG_TIMEZONE", "x" * 300, "SUIFANG_TIMEZONE: String should have at most 64"),
        (
            "SUIFANG_TOKEN_MAX_LIFETIME_DAYS",
            "0",
            "SUIFANG_TOKEN_MAX_LIFETIME_DAYS: Input should be greater than or equal to 1",
        ),
        (
            "SUIFANG_API_MAX_JSON_DEPTH",
            "5000",
            "SUIFANG_API_MAX_JSON_DEPTH: Input should be less than or equal to 256",
        ),
        ("SUIFANG_LOCALE", "fr", "SUIFANG_LOCALE: Input should be 'zh-CN' or 'en'"),
        ("SUIFANG_DATABASE_URL", "not a url", "SUIFANG_DATABASE_URL: not a database URL"),
        ("SUIFANG_TELEMETRY_EXPORTER", "jaeger", "SUIFANG_TELEMETRY_EXPORTER: Input should be"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert expected in str(caught.value)


def test_cli_config_masks_secrets_and_fails_cleanly_on_bad_values(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "SUIFANG_DATABASE_URL": "postgresql+psycopg://suifang:s3cret-pw@db.example:5432/suifang",
        "SUIFANG_TEMPORAL_API_KEY": "tk-very-secret",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "suifang.core.cli", "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert "s3cret-pw" not in shown
    assert "tk-very-secret" not in shown
    assert "postgresql+psycopg://suifang:***@db.example:5432/suifang" in shown
    assert "SUIFANG_TEMPORAL_API_KEY" in shown
    assert "********" in shown

    bad = subprocess.run(
        [sys.executable, "-m", "suifang.core.cli", "config"],
        capture_output=True,
        text=True,
        env={**env, "SUIFANG_API_PORT": "x"},
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("suifang: error: invalid setting SUIFANG_API_PORT")
    assert "Traceback" not in bad.stderr
