"""Backup and restore of the embedded default: the app database and the Temporal store.

Both are SQLite files in the data directory. A backup is taken online, with SQLite's backup
API (a consistent snapshot of each file while the platform runs), into one ``.tar.gz`` with a
manifest. The Temporal store is copied first and the app database second: a message sent in
between is in the app database, and the journey that replays its send after a restore finds
it there (idempotency key) instead of sending it twice.

The keys are not in the backup. Its rows and payloads are encrypted; a backup with its keys
is readable by whoever holds both. The manifest names the keys by id (a hash, not the key),
and a restore refuses keys that cannot read it.

A PostgreSQL app database (production) is backed up with PostgreSQL's own tools (pg_dump,
base backups); a backup then holds the Temporal store of the embedded server only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import shutil
import sqlite3
import tarfile
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from suifang.core.config import Settings
from suifang.core.db import create_db_engine, current_revision
from suifang.core.embedded import DevServer, port_in_use
from suifang.core.errors import ValidationFailed
from suifang.core.private_files import PRIVATE_FILE_MODE, private_directory, tighten
from suifang.core.security.crypto import KEY_FILE, Keyring, keyring_from_settings

__all__ = ["BackupSummary", "RestoreSummary", "backup", "keys_guidance", "restore"]

FORMAT = 1
MANIFEST = "manifest.json"
APP_DATABASE = "suifang.db"
TEMPORAL_STORE = "temporal.db"


@dataclasses.dataclass(frozen=True)
class BackupSummary:
    path: Path
    files: dict[str, int]
    """Name in the archive → bytes."""
    migration: str | None
    app_database_included: bool


@dataclasses.dataclass(frozen=True)
class RestoreSummary:
    restored: dict[str, Path]
    moved_aside: Path | None
    migration: str | None
    created_at: str


def keys_guidance(settings: Settings) -> str:
    where = (
        "SUIFANG_ENCRYPTION_KEYS and SUIFANG_BLIND_INDEX_KEY"
        if settings.encryption_keys is not None
        else str(settings.data_dir / KEY_FILE)
    )
    return (
        f"The keys are not in the backup: keep a copy of {where} apart from the backups. "
        "Without them no backup can be read; with them, anyone holding a backup can read it."
    )


def _app_database_file(settings: Settings) -> Path | None:
    url = make_url(settings.database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return None
    return Path(url.database)


def _key_ids(keyring: Keyring) -> list[str]:
    return [key_id.decode() for key_id, _ in keyring.payload_ciphers]


def _index_check(keyring: Keyring) -> str:
    """Whether two blind-index keys are the same, without storing either."""
    return hmac.new(keyring.blind_index_key, b"suifang backup check", hashlib.sha256).hexdigest()


def _snapshot(source: Path, target: Path) -> int:
    """A consistent copy of a live SQLite file (WAL included), via SQLite's backup API."""
    live, copy = sqlite3.connect(source), sqlite3.connect(target)
    try:
        live.backup(copy)
    finally:
        copy.close()
        live.close()
    return target.stat().st_size


def _package_version() -> str:
    try:
        return version("suifang")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def backup(settings: Settings, out: Path) -> BackupSummary:
    """Write a backup of the data directory's stores to ``out`` (a new ``.tar.gz``)."""
    if out.exists():
        raise ValidationFailed(f"{out}: exists already; give a new file name")
    if not out.parent.is_dir():
        raise ValidationFailed(f"{out.parent}: no such directory")
    if not out.name.endswith((".tar.gz", ".tgz")):
        raise ValidationFailed(f"{out}: give a .tar.gz file name")
    temporal_store = DevServer(settings).db_file
    app_database = _app_database_file(settings)
    if not temporal_store.exists() and (app_database is None or not app_database.exists()):
        raise ValidationFailed(
            f"nothing to back up in {settings.data_dir}: no Temporal store and no SQLite app "
            "database (has suifang up run here? is SUIFANG_DATA_DIR right?)"
        )
    keyring = keyring_from_settings(settings)
    files: dict[str, int] = {}
    migration = None
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".suifang-backup-") as scratch:
        staging = Path(scratch)
        if temporal_store.exists():  # first: see the module's docstring
            files[TEMPORAL_STORE] = _snapshot(temporal_store, staging / TEMPORAL_STORE)
        if app_database is not None and app_database.exists():
            files[APP_DATABASE] = _snapshot(app_database, staging / APP_DATABASE)
            engine = create_db_engine(f"sqlite:///{staging / APP_DATABASE}")
            try:
                migration = current_revision(engine)
            finally:
                engine.dispose()
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "suifang_version": _package_version(),
            "files": files,
            "migration": migration,
            "temporal_namespace": settings.temporal_namespace,
            "key_ids": _key_ids(keyring),
            "blind_index_check": _index_check(keyring),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        partial = staging / "backup.tar.gz"
        with tarfile.open(partial, "w:gz") as archive:
            for name in (MANIFEST, *files):
                archive.add(staging / name, arcname=name)
        tighten(partial, PRIVATE_FILE_MODE)
        partial.replace(out)  # complete or absent: never a half-written backup under the name
    return BackupSummary(out, files, migration, APP_DATABASE in files)


def _read_manifest(archive: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = archive.getmember(MANIFEST)
        handle = archive.extractfile(member)
        manifest = json.loads(handle.read() if handle else b"")
    except (KeyError, ValueError):
        raise ValidationFailed(f"{source}: not a suifang backup (no readable manifest)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValidationFailed(
            f"{source}: backup format {manifest.get('format')!r} is not one this version "
            f"reads ({FORMAT})"
        )
    return manifest


def _check_keys(settings: Settings, manifest: dict[str, Any]) -> None:
    if settings.encryption_keys is None and not (settings.data_dir / KEY_FILE).exists():
        raise ValidationFailed(
            f"no keys here: put the key file from your key backup at "
            f"{settings.data_dir / KEY_FILE} (or set SUIFANG_ENCRYPTION_KEYS and "
            "SUIFANG_BLIND_INDEX_KEY) before restoring; the backup cannot be read without them"
        )
    keyring = keyring_from_settings(settings)
    written_with = manifest.get("key_ids") or []
    if not written_with or written_with[0] not in _key_ids(keyring):
        raise ValidationFailed(
            "the keys here are not the ones this backup was written with (key id "
            f"{written_with[0] if written_with else '?'} is missing): restore the key file "
            "from the same time as the backup"
        )
    if manifest.get("blind_index_check") != _index_check(keyring):
        raise ValidationFailed(
            "the blind-index key here is not the one this backup was written with: restore "
            "the key file from the same time as the backup"
        )


def _targets(
    settings: Settings, manifest: dict[str, Any], archive: tarfile.TarFile, source: Path
) -> dict[str, Path]:
    """Where each file of the backup goes back to."""
    targets = {TEMPORAL_STORE: DevServer(settings).db_file}
    if APP_DATABASE in manifest["files"]:
        app_database = _app_database_file(settings)
        if app_database is None:
            raise ValidationFailed(
                "the backup holds a SQLite app database, but SUIFANG_DATABASE_URL names "
                "PostgreSQL: restore into the embedded default (unset it) or load the "
                "PostgreSQL backup with pg_restore"
            )
        targets[APP_DATABASE] = app_database
    wanted = {name: targets[name] for name in manifest["files"] if name in targets}
    present = set(archive.getnames())
    for name in wanted:
        if name not in present:
            raise ValidationFailed(f"{source}: the manifest names {name}, which is missing")
    return wanted


def _move_aside(settings: Settings, targets: dict[str, Path], *, force: bool) -> Path | None:
    """Move the files a restore would replace (with their WAL) into a dated folder."""
    occupied = [
        path
        for target in targets.values()
        for path in (target, *(target.with_name(target.name + s) for s in ("-wal", "-shm")))
        if path.exists()
    ]
    if not occupied:
        return None
    if not force:
        names = ", ".join(p.name for p in occupied)
        raise ValidationFailed(
            f"{settings.data_dir} holds data already ({names}): restore with --force, which "
            "moves it aside first (nothing is deleted)"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = private_directory(settings.data_dir / f"before-restore-{stamp}")
    for path in occupied:
        shutil.move(path, aside / path.name)
    return aside


def restore(settings: Settings, source: Path, *, force: bool = False) -> RestoreSummary:
    """Put a backup's stores back in the data directory; the platform must be stopped."""
    if not source.is_file():
        raise ValidationFailed(f"{source}: no such file")
    if port_in_use(settings.temporal_host, settings.temporal_port):
        raise ValidationFailed(
            f"something listens on {settings.temporal_address}: stop suifang up (and any "
            "Temporal server using this data directory) before restoring"
        )
    try:
        with tarfile.open(source, "r:gz") as archive:
            manifest = _read_manifest(archive, source)
            _check_keys(settings, manifest)
            targets = _targets(settings, manifest, archive, source)
            moved_aside = _move_aside(settings, targets, force=force)
            private_directory(settings.data_dir)
            for name, target in targets.items():
                handle = archive.extractfile(name)
                if handle is None:
                    raise ValidationFailed(f"{source}: {name} is not a file")
                private_directory(target.parent)
                partial = target.with_name(target.name + ".restoring")
                with partial.open("wb") as out:
                    shutil.copyfileobj(handle, out)
                tighten(partial, PRIVATE_FILE_MODE)
                partial.replace(target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValidationFailed(f"{source}: not a readable backup ({exc})") from None
    return RestoreSummary(
        targets, moved_aside, manifest.get("migration"), str(manifest.get("created_at"))
    )
