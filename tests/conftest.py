from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suifang.core.cli import main as cli_main
from suifang.core.cli.context import cli_runtime
from suifang.core.config import get_settings
from suifang.core.security.crypto import Keyring, configure_keyring, get_keyring

# suifang.testing (the test kit, loaded through its pytest11 entry point) brings the fixtures.


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


@pytest.fixture
def cli(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """``suifang …`` in this process, with its own data directory: ``cli(*argv)`` gives the
    exit code, stdout and stderr.

    A test with a ``runtime`` gets the CLI on that runtime's database, with the keys now
    installed: the ones that wrote its rows (a module fixture may have put in its own).
    """
    # Imported here: at the top of this file it would come before pytest_plugins loads the
    # module as a plugin, and pytest could no longer rewrite its asserts.
    from suifang.core.testing import keyring_environment

    runtime = request.getfixturevalue("runtime") if "runtime" in request.fixturenames else None
    keys = get_keyring()
    monkeypatch.setenv("SUIFANG_DATA_DIR", str(tmp_path / "cli"))
    if runtime is not None:
        monkeypatch.setenv("SUIFANG_DATABASE_URL", runtime.settings.database_url)
        for name, value in keyring_environment(keys).items():
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    cli_runtime.cache_clear()

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    try:
        yield run
    finally:
        if cli_runtime.cache_info().currsize:
            cli_runtime().close()
        cli_runtime.cache_clear()
        get_settings.cache_clear()
        configure_keyring(keys)  # the CLI installed its data directory's keys
