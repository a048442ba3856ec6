"""Key rotation: re-encrypt stored values under the newest key; recompute keyed hashes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Text, bindparam, column, select, table, update

from suifang.core.models import metadata
from suifang.core.security.crypto import (
    EncryptedText,
    blind_index,
    get_keyring,
    identifier_index,
)

__all__ = [
    "BLIND_INDEXES",
    "encrypted_columns",
    "reindex_blind_indexes",
    "rotate_encrypted_columns",
]

BLIND_INDEXES: dict[tuple[str, str], tuple[tuple[str, ...], Callable[..., str]]] = {
    # (table, hash column): (the columns it is computed from, how)
    ("contact_point", "value_hash"): (("system", "value"), blind_index),
    ("staff_contact", "value_hash"): (("system", "value"), blind_index),
    ("patient", "id_number_hash"): (("id_number",), lambda v: blind_index("id_number", v)),
    ("patient", "external_id_hash"): (("external_id",), lambda v: identifier_index("mrn", v)),
    ("encounter", "external_id_hash"): (("external_id",), lambda v: identifier_index("visit", v)),
}
"""Every keyed hash kept beside an encrypted value, so a lookup needs no plaintext."""


def encrypted_columns() -> dict[str, list[str]]:
    """Every encrypted column (text, JSON, dates, numbers alike), by table."""
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


def reindex_blind_indexes(engine: Engine) -> dict[str, int]:
    """Recompute every keyed hash with the current blind-index key (after it changed).

    Values are read through the model's encrypted types (decrypted), hashed, and written
    back by id; the counts are per ``table.column``.
    """
    counts: dict[str, int] = {}
    for (table_name, hash_column), (sources, compute) in BLIND_INDEXES.items():
        model_table = metadata.tables[table_name]
        hashes = table(table_name, column("id"), column(hash_column, Text))
        sources_of: list[Any] = [model_table.c[name] for name in sources]
        with engine.begin() as connection:
            rows = connection.execute(select(model_table.c.id, *sources_of)).all()
            updates = [
                {"row_id": row.id, "new_hash": compute(*row[1:])}
                for row in rows
                if all(value is not None for value in row[1:])
            ]
            if updates:
                connection.execute(
                    update(hashes)
                    .where(hashes.c.id == bindparam("row_id"))
                    .values({hash_column: bindparam("new_hash")}),
                    updates,
                )
        counts[f"{table_name}.{hash_column}"] = len(updates)
    return counts
