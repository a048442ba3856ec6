"""PHI encrypted at rest: names, birth dates, MRNs, diagnoses, answers, observations, alerts,
provider error texts

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-04 13:55:14.731571

Every listed column becomes TEXT holding a Fernet token, and the values already stored in the
clear are encrypted here, with the keys of the process that runs the migration (the
keyring its runtime installed, else the one ``SUIFANG_*`` settings or the data directory's
key file name). MRNs and visit numbers get a keyed hash (``external_id_hash``) that takes
over their unique constraint, so intake still finds a returning patient. Downgrading
decrypts everything back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from suifang.core.errors import ConfigurationError
from suifang.core.security.crypto import (
    EncryptedDate,
    EncryptedFloat,
    EncryptedJSON,
    EncryptedText,
    Keyring,
    get_keyring,
    keyring_from_settings,
)

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON, _DATE, _FLOAT = sa.JSON(), sa.Date(), sa.Float()
# table → column → (type before this revision, nullable, the encrypted type it becomes)
COLUMNS: dict[str, dict[str, tuple[Any, bool, EncryptedText]]] = {
    'patient': {
        'external_id': (sa.String(64), False, EncryptedText()),
        'name': (sa.String(128), False, EncryptedText()),
        'birth_date': (_DATE, True, EncryptedDate()),
    },
    'encounter': {
        'external_id': (sa.String(64), False, EncryptedText()),
        'diagnosis_codes': (_JSON, False, EncryptedJSON()),
        'diagnosis_text': (sa.String(512), True, EncryptedText()),
        'comorbidity_codes': (_JSON, False, EncryptedJSON()),
        'procedure_codes': (_JSON, False, EncryptedJSON()),
        'procedure_text': (sa.String(512), True, EncryptedText()),
        'attending_doctor': (sa.String(128), True, EncryptedText()),
        'discharge_disposition': (sa.String(64), True, EncryptedText()),
    },
    'enrollment': {
        'risk_reasons': (_JSON, False, EncryptedJSON()),
        'stop_reason': (sa.String(128), True, EncryptedText()),
    },
    'touchpoint_record': {
        'detail': (sa.String(256), True, EncryptedText()),
    },
    'answer': {
        'value': (_JSON, False, EncryptedJSON()),
        'invalid': (sa.String(256), True, EncryptedText()),
    },
    'observation': {
        'value': (_FLOAT, False, EncryptedFloat()),
    },
    'message': {
        'status_detail': (sa.String(256), True, EncryptedText()),
    },
    'delivery_attempt': {
        'error': (sa.String(256), True, EncryptedText()),
        'detail': (_JSON, False, EncryptedJSON()),
    },
    'alert': {
        'summary_zh': (sa.String(256), False, EncryptedText()),
        'summary_en': (sa.String(256), False, EncryptedText()),
        'evidence': (_JSON, False, EncryptedJSON()),
    },
}
# table → the blind-index kind of its external_id (crypto.identifier_index)
HASHED = {'patient': 'mrn', 'encounter': 'visit'}
_BATCH = 500


def _keyring() -> Keyring:
    try:
        return get_keyring()
    except ConfigurationError:  # run by plain `alembic`, not by suifang
        from suifang.core.config import load_settings

        return keyring_from_settings(load_settings())


def _rows(connection: Connection, name: str, columns: list[str]) -> Iterator[list[Any]]:
    """The table's rows in batches, by id (a hospital's answers do not fit in memory)."""
    table = sa.table(name, sa.column('id'), *(sa.column(c, sa.Text) for c in columns))
    last = 0
    while True:
        batch = connection.execute(
            sa.select(table).where(table.c.id > last).order_by(table.c.id).limit(_BATCH)
        ).all()
        if not batch:
            return
        yield batch
        last = batch[-1].id


def _rewrite(name: str, change: Any, *, hash_kind: str | None = None) -> None:
    """Replace each stored value of table ``name`` by ``change(column, value)``."""
    connection = op.get_bind()
    columns = list(COLUMNS[name])
    table = sa.table(
        name,
        sa.column('id'),
        *(sa.column(c, sa.Text) for c in columns),
        sa.column('external_id_hash', sa.Text),
    )
    keyring: Keyring | None = None
    for batch in _rows(connection, name, columns):
        keyring = keyring or _keyring()
        updates = []
        for row in batch:
            values = {
                c: change(keyring, c, getattr(row, c)) if getattr(row, c) is not None else None
                for c in columns
            }
            if hash_kind is not None:
                values['external_id_hash'] = keyring.index(hash_kind, row.external_id)
            updates.append({'row_id': row.id, **values})
        connection.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam('row_id'))
            .values({c: sa.bindparam(c) for c in updates[0] if c != 'row_id'}),
            updates,
        )


def _encrypt(name: str) -> Any:
    def encrypt(keyring: Keyring, column: str, stored: str) -> str:
        kind = COLUMNS[name][column][2]
        # Stored JSON is text now; dates and numbers are their text forms, which
        # EncryptedDate and EncryptedFloat read as they read their own values.
        value = json.loads(stored) if isinstance(kind, EncryptedJSON) else stored
        return keyring.encrypt(kind.serialise(value))

    return encrypt


def _decrypt(keyring: Keyring, column: str, stored: str) -> str:
    return keyring.decrypt(stored)


def _using(column: str, old: Any, dialect: str) -> dict[str, str]:
    """PostgreSQL needs to be told how text becomes JSON, a date or a number again."""
    if dialect != 'postgresql':
        return {}
    cast = {sa.JSON: 'json', sa.Date: 'date', sa.Float: 'double precision'}.get(type(old))
    return {'postgresql_using': f'{column}::{cast}'} if cast else {}


def upgrade() -> None:
    for name, columns in COLUMNS.items():
        with op.batch_alter_table(name, schema=None) as batch_op:
            if name in HASHED:
                batch_op.add_column(sa.Column('external_id_hash', sa.String(64), nullable=True))
            for column, (old, nullable, _) in columns.items():
                batch_op.alter_column(
                    column, existing_type=old, type_=sa.Text(), existing_nullable=nullable
                )
    # The rewrite of patients and encounters also fills their keyed hash.
    for name in COLUMNS:
        _rewrite(name, _encrypt(name), hash_kind=HASHED.get(name))
    # The plaintext the rewrite replaced is still in the files until they are vacuumed.
    op.get_context().config.attributes['vacuum_after'] = list(COLUMNS)
    for name in HASHED:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.alter_column(
                'external_id_hash', existing_type=sa.String(64), nullable=False
            )
            batch_op.drop_constraint(batch_op.f(f'uq_{name}_external_id'), type_='unique')
            batch_op.create_unique_constraint(
                batch_op.f(f'uq_{name}_external_id_hash'), ['external_id_hash']
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in COLUMNS:
        _rewrite(name, _decrypt)
    for name, columns in COLUMNS.items():
        with op.batch_alter_table(name, schema=None) as batch_op:
            for column, (old, nullable, _) in columns.items():
                if dialect == 'sqlite' and isinstance(old, sa.Date):
                    # Batch mode would CAST the text to DATE, which SQLite turns into the year
                    # alone; as TEXT the dates read back exactly as a DATE column's would.
                    continue
                batch_op.alter_column(
                    column,
                    existing_type=sa.Text(),
                    type_=old,
                    existing_nullable=nullable,
                    **_using(column, old, dialect),
                )
            if name in HASHED:
                batch_op.drop_constraint(
                    batch_op.f(f'uq_{name}_external_id_hash'), type_='unique'
                )
                batch_op.create_unique_constraint(
                    batch_op.f(f'uq_{name}_external_id'), ['external_id']
                )
                batch_op.drop_column('external_id_hash')
