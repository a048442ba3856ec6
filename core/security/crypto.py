"""Encryption of sensitive fields at rest, and keyed hashes to find rows by them.

Everything that identifies a patient or says something about their health — names, birth
dates, MRNs, ID-card numbers, contact details, diagnoses, answers, observations, alerts, free
text and message bodies (docs/security.md lists the columns) — is stored as Fernet tokens
(AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package). Several keys may be
configured: the first encrypts, all decrypt, so keys rotate without downtime (``suifang keys
rotate`` re-encrypts old rows). Equality lookups (which patient sent this SMS? which patient
has this MRN?) use a *blind index*: an HMAC-SHA256 of the normalised value under a separate
key.

Keys come from ``SUIFANG_ENCRYPTION_KEYS`` (comma-separated, newest first) and
``SUIFANG_BLIND_INDEX_KEY``. When both are unset — the embedded default — a key file is
created once in the data directory with owner-only permissions.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from suifang.core.errors import ConfigurationError
from suifang.core.private_files import private_directory

if TYPE_CHECKING:
    from suifang.core.config import Settings

__all__ = [
    "EncryptedDate",
    "EncryptedFloat",
    "EncryptedJSON",
    "EncryptedText",
    "Keyring",
    "blind_index",
    "configure_keyring",
    "generate_key",
    "get_keyring",
    "identifier_index",
    "keyring_from_settings",
    "normalise_phone",
]

KEY_FILE = "keys.json"
PAYLOAD_KEY_INFO = b"suifang temporal payloads aes-256-gcm v1"


def generate_key() -> str:
    return Fernet.generate_key().decode()


@dataclass(frozen=True)
class Keyring:
    encryption_keys: tuple[str, ...]
    blind_index_key: bytes

    def __post_init__(self) -> None:
        if not self.encryption_keys:
            raise ConfigurationError("SUIFANG_ENCRYPTION_KEYS: at least one key is needed")
        for number, key in enumerate(self.encryption_keys, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"SUIFANG_ENCRYPTION_KEYS: key {number} is not a Fernet key "
                    "(32 url-safe base64 bytes; make one with `suifang keys generate`)"
                ) from None
        if len(self.blind_index_key) < 16:
            raise ConfigurationError("SUIFANG_BLIND_INDEX_KEY: must be at least 16 bytes")

    @functools.cached_property
    def fernet(self) -> MultiFernet:
        # Cached: every encrypted column of every row read or written goes through it.
        return MultiFernet([Fernet(k) for k in self.encryption_keys])

    @functools.cached_property
    def payload_ciphers(self) -> tuple[tuple[bytes, AESGCM], ...]:
        """(key id, AES-256-GCM) for Temporal payloads, one per encryption key, newest first.

        Each key is derived from its Fernet key with HKDF-SHA256, so the two uses never share
        key material; the id is a hash of the derived key, safe to store beside ciphertext.
        """
        ciphers = []
        for key in self.encryption_keys:
            derived = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=PAYLOAD_KEY_INFO
            ).derive(base64.urlsafe_b64decode(key))
            key_id = hashlib.sha256(derived).hexdigest()[:16].encode()
            ciphers.append((key_id, AESGCM(derived)))
        return tuple(ciphers)

    def encrypt(self, plaintext: str) -> str:
        return self.fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                "cannot decrypt a stored value: none of SUIFANG_ENCRYPTION_KEYS fits "
                "(was a retired key removed before `suifang keys rotate` ran?)"
            ) from None

    def rotate(self, token: str) -> str:
        return self.fernet.rotate(token.encode("ascii")).decode("ascii")

    def index(self, kind: str, value: str) -> str:
        return hmac.new(
            self.blind_index_key, f"{kind}:{value}".encode(), hashlib.sha256
        ).hexdigest()

    @classmethod
    def from_strings(cls, encryption_keys: str, blind_index_key: str) -> Keyring:
        keys = tuple(k.strip() for k in encryption_keys.split(",") if k.strip())
        return cls(keys, blind_index_key.encode("utf-8"))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Keyring:
        """The embedded default: one key file, created owner-readable on first use."""
        path = data_dir / KEY_FILE
        private_directory(data_dir)
        if not path.exists():
            content = {
                "encryption_keys": [generate_key()],
                "blind_index_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            }
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(content, handle)
        try:
            content = json.loads(path.read_text())
            return cls(tuple(content["encryption_keys"]), content["blind_index_key"].encode())
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigurationError(f"{path}: not a valid suifang key file") from None


_keyring: Keyring | None = None


def configure_keyring(keyring: Keyring) -> None:
    """Install the process's keyring (the runtime does this once at start-up)."""
    global _keyring
    _keyring = keyring


def get_keyring() -> Keyring:
    if _keyring is None:
        raise ConfigurationError("encryption keys are not configured (Runtime not started?)")
    return _keyring


_NON_DIGITS = re.compile(r"[^\d+]")


def normalise_phone(value: str) -> str:
    """``+86 138-0013-8000`` and ``13800138000`` index the same way (mainland numbers)."""
    digits = _NON_DIGITS.sub("", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    return digits


def blind_index(kind: str, value: str) -> str:
    """The keyed hash used to look a row up by a sensitive value (phone, email, ID number)."""
    normalised = normalise_phone(value) if kind == "phone" else value.strip().lower()
    return get_keyring().index(kind, normalised)


def identifier_index(kind: str, value: str) -> str:
    """The keyed hash of an identifier compared exactly (an MRN, a visit number): unlike
    :func:`blind_index`, case is kept, since HIS identifiers that differ in case differ."""
    return get_keyring().index(kind, value)


class EncryptedText(TypeDecorator[Any]):
    """A string column stored encrypted; reads give the plaintext back.

    The subclasses below store other values (JSON, dates, numbers) the same way: serialised
    to text, then encrypted. They are all ``EncryptedText`` so key rotation, migrations and
    the schema check treat every encrypted column alike: the database sees only ciphertext.
    """

    impl = Text
    cache_ok = True

    def serialise(self, value: Any) -> str:
        return str(value)

    def deserialise(self, text: str) -> Any:
        return text

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None and not self.should_evaluate_none:
            return None
        return get_keyring().encrypt(self.serialise(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return self.deserialise(get_keyring().decrypt(value))

    def copy(self, **kw: Any) -> EncryptedText:
        return type(self)()


class EncryptedJSON(EncryptedText):
    """A JSON value (diagnosis codes, answer values, alert evidence) stored encrypted.

    Like SQLAlchemy's JSON type, ``None`` is stored as JSON ``null`` (encrypted), not SQL NULL:
    these columns are NOT NULL, and an answer without a structured value is such a row.
    """

    cache_ok = True
    should_evaluate_none = True

    def serialise(self, value: Any) -> str:
        # Compact and with CJK as is: the same value always gives the same plaintext.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def deserialise(self, text: str) -> Any:
        return json.loads(text)


class EncryptedDate(EncryptedText):
    """A date (a birth date) stored encrypted, as ISO ``YYYY-MM-DD`` before encryption."""

    cache_ok = True

    def serialise(self, value: Any) -> str:
        if not isinstance(value, dt.date):
            value = dt.date.fromisoformat(str(value))
        return value.isoformat()

    def deserialise(self, text: str) -> dt.date:
        return dt.date.fromisoformat(text)


class EncryptedFloat(EncryptedText):
    """A number (an observation's value) stored encrypted; ``repr`` keeps it exact."""

    cache_ok = True

    def serialise(self, value: Any) -> str:
        return repr(float(value))

    def deserialise(self, text: str) -> float:
        return float(text)


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keys named by the settings, or the data directory's key file when none are set."""
    keys, index_key = settings.encryption_keys, settings.blind_index_key
    if keys is not None and index_key is not None:
        return Keyring.from_strings(keys.get_secret_value(), index_key.get_secret_value())
    if keys is not None or index_key is not None:
        raise ConfigurationError(
            "set both SUIFANG_ENCRYPTION_KEYS and SUIFANG_BLIND_INDEX_KEY, or neither "
            "(then a key file in the data directory is used)"
        )
    return Keyring.load_or_create(settings.data_dir)
