"""Bad input to ``suifang backup`` and ``suifang restore`` gets one clear line, and nothing is
written or replaced."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from suifang.core.backup import _index_check as index_check
from suifang.core.embedded import free_port
from suifang.core.security.crypto import Keyring

Cli = Callable[..., tuple[int, str, str]]


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("backup", "{tmp}/nowhere/b.tar.gz"), "no such directory"),
        (("backup", "{tmp}/b.zip"), "give a .tar.gz file name"),
        (("backup", "{tmp}/b.tar.gz"), "nothing to back up"),
        (("backup", "{tmp}/existing.tar.gz"), "exists already"),
        (("restore", "{tmp}/missing.tar.gz"), "no such file"),
        (("restore", "{tmp}/not-a-tar.tar.gz"), "not a readable backup"),
        (("restore", "{tmp}/no-manifest.tar.gz"), "not a suifang backup"),
        (("restore", "{tmp}/future.tar.gz"), "backup format 99"),
        (("restore", "{tmp}/liar.tar.gz"), "the manifest names suifang.db, which is missing"),
    ],
)
def test_bad_backup_and_restore_input_is_one_clear_line(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUIFANG_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing there
    (tmp_path / "existing.tar.gz").write_bytes(b"keep me")
    (tmp_path / "not-a-tar.tar.gz").write_bytes(b"plain text, not gzip")
    _tar(tmp_path / "no-manifest.tar.gz", {"readme.txt": b"hello"})
    _tar(tmp_path / "future.tar.gz", {"manifest.json": json.dumps({"format": 99}).encode()})
    # Keys that fit (the cli's data directory's), so that the lie is what is refused.
    keyring = Keyring.load_or_create(tmp_path / "cli")
    manifest = {
        "format": 1,
        "files": {"suifang.db": 10},
        "key_ids": [key_id.decode() for key_id, _ in keyring.payload_ciphers],
        "blind_index_check": index_check(keyring),
    }
    _tar(tmp_path / "liar.tar.gz", {"manifest.json": json.dumps(manifest).encode()})
    argv = [a.format(tmp=tmp_path) for a in args]
    code, out, err = cli(*argv)
    assert code != 0, out
    assert says in err, err
    assert "Traceback" not in out + err
    assert (tmp_path / "existing.tar.gz").read_bytes() == b"keep me"
