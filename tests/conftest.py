from __future__ import annotations

from collections.abc import Iterator

import pytest

from suifang.core.security.crypto import Keyring, configure_keyring

pytest_plugins = ["suifang.core.testing"]


@pytest.fixture(autouse=True)
def _session_keys_after_each_test(test_keyring: Keyring) -> Iterator[None]:
    """Every test ends with the session's test keys installed again.

    The keyring is process-wide, like a deployment's, and whatever starts a runtime from
    settings (``create_app(settings=…)``, an in-process CLI run) installs its data directory's
    keys. The Temporal test clients encrypt with the session's keys, so a test after such a one
    would see payloads and rows under two different keyrings.
    """
    yield
    configure_keyring(test_keyring)
