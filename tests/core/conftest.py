"""Fixtures of the tests that run ``suifang`` itself as a process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ports_env(tmp_path: Path) -> dict[str, str]:
    """An environment for ``suifang up``: its own data directory and free ports."""
    return {
        **os.environ,
        "SUIFANG_DATA_DIR": str(tmp_path / "var"),
        "SUIFANG_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUIFANG_TEMPORAL_UI_PORT": str(free_port()),
        "SUIFANG_API_PORT": str(free_port()),
        "SUIFANG_HL7_MLLP_PORT": str(free_port()),
        "SUIFANG_DATABASE_URL": "",
    }
