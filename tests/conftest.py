from __future__ import annotations

from collections.abc import Iterator

import pytest

from suifang.core.security.crypto import Keyring, configure_keyring, get_keyring

pytest_plugins = ["suifang.core.testing", "suifang.workflows.testing"]


@pytest.fixture(autouse=True)
def _keys_restored_after_each_test(test_keyring: Keyring) -> Iterator[None]:
    """Every test ends with the keys it started with installed again.

    The keyring is process-wide, like a deployment's, and whatever starts a runtime from
    settings (``create_app(settings=…)``, an in-process CLI run) installs its data directory's
    keys. The Temporal test clients encrypt with the session's keys (``test_keyring``, set up
    first), and a module's fixture may install its platform's: a test after one that left
    other keys behind would see payloads and rows under two different keyrings.
    """
    installed = get_keyring()
    yield
    configure_keyring(installed)
