"""Key rotation: re-encrypt stored values under the newest key; recompute keyed hashes."""

from __future__ import annotations

from sqlalchemy import Engine, Text, column, select, table, update
from sqlmodel import Session
from sqlmodel import select as select_model

from suifang.core.models import ContactPoint, metadata
from suifang.core.security.crypto import EncryptedText, blind_index, get_keyring

__all__ = ["encrypted_columns", "reindex_contacts", "rotate_encrypted_columns"]


def encrypted_columns() -> dict[str, list[str]]:
    """Every encrypted column, by table."""
    found: dict[str, list[str]] = {}
    for name, table_ in metadata.tables.items():
        columns = [c.name for c in table_.columns if isinstance(c.type, EncryptedText)]
        if columns:
            found[name] = columns
    return found


def rotate_encrypted_columns(engine: Engine) -> dict[str, int]:
    """Re-encrypt every value with the first configured key (MultiFernet.rotate)."""
    keyring = get_keyring()
    counts: dict[str, int] = {}
    for table_name, names in encrypted_columns().items():
        raw = table(table_name, column("id"), *(column(n, Text) for n in names))
        rotated = 0
        with engine.begin() as connection:
            rows = connection.execute(select(raw)).all()
            for row in rows:
                values = {
                    n: keyring.rotate(getattr(row, n)) for n in names if getattr(row, n) is not None
                }
                if values:
                    connection.execute(update(raw).where(raw.c.id == row.id).values(**values))
                    rotated += 1
        counts[table_name] = rotated
    return counts


def reindex_contacts(engine: Engine) -> int:
    """Recompute contact-point hashes with the current blind-index key."""
    with Session(engine) as session:
        contacts = list(session.exec(select_model(ContactPoint)).all())
        for contact in contacts:
            contact.value_hash = blind_index(contact.system, contact.value)
            session.add(contact)
        session.commit()
        return len(contacts)
