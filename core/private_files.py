"""The data directory is private: created 0700, every file in it 0600.

Encryption keeps patient data out of a copied database or Temporal store, but the files also
hold the key file, what is not encrypted (who is enrolled where, ticket metadata) and the
Temporal server's log. So no other local account may read them: they are created owner-only
where they are created — not fixed up afterwards, which would leave a window — and files left
readable by an older version are tightened when suifang opens them.

The CLI runs with umask 077 (:data:`PRIVATE_UMASK`), and so do the processes it starts
(the Temporal dev server), so every file they create is private without naming each one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PRIVATE_DIRECTORY_MODE",
    "PRIVATE_FILE_MODE",
    "PRIVATE_UMASK",
    "private_directory",
    "private_file",
    "private_umask",
    "tighten",
]

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077
"""Group and others get nothing of what a suifang process creates."""

logger = logging.getLogger(__name__)


def tighten(path: Path, mode: int) -> None:
    """Take away the permission bits ``mode`` does not grant, if ``path`` exists.

    Bits are only removed (a read-only file stays read-only). A file owned by another account
    cannot be changed; that is logged, not fatal: the operator chose that layout.
    """
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        try:
            path.chmod(current & mode)
        except PermissionError:
            logger.warning("%s is readable by other accounts and not ours to change", path)


def private_directory(path: Path, *, tighten_existing: bool = True) -> Path:
    """Create ``path`` (and missing parents) owner-only; an existing one is tightened unless
    ``tighten_existing`` is false (a directory suifang does not own, e.g. a database's)."""
    existed = path.is_dir()
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    if tighten_existing or not existed:
        # mkdir's mode passes through the umask; chmod does not.
        tighten(path, PRIVATE_DIRECTORY_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and owner-only if it is missing; tighten it if it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(descriptor)
    tighten(path, PRIVATE_FILE_MODE)
    return path


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Run the block with umask 077, then restore the previous one."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)
