"""Issue 19, finding 6: patient data is ciphertext in the database, lookups still work, keys
still rotate, old plaintext rows are encrypted by the migration, and the data files are the
owner's alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from alembic import command
from sqlalchemy import text
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.db import alembic_config, create_db_engine, migrate
from suifang.core.models import Alert, Answer, Encounter, Enrollment, Observation, Patient, metadata
from suifang.core.private_files import private_umask
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.security.crypto import (
    Keyring,
    configure_keyring,
    generate_key,
    get_keyring,
    identifier_index,
)
from suifang.core.security.keys import (
    BLIND_INDEXES,
    encrypted_columns,
    reindex_blind_indexes,
    rotate_encrypted_columns,
)
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import AnswerEvent

NAME = "诸葛青云"
MRN = "MRN-ZGQY-7731"
VISIT = "VIS-ZGQY-7731"
BIRTH_DATE = "1951-07-23"
DIAGNOSIS_TEXT = "左前降支近段重度狭窄伴钙化"
DIAGNOSIS_CODE = "I25.103"
DOCTOR = "司马长风"
FREE_TEXT = "请问复查时要带上次的造影光盘吗"
SBP = 187.5


def discharge(discharged_at: dt.datetime, visit: str = VISIT) -> DischargeIn:
    return DischargeIn.model_validate(
        {
            "pathway": "pci",
            "patient": {
                "external_id": MRN,
                "name": NAME,
                "sex": "male",
                "birth_date": BIRTH_DATE,
                "phone": "13911112222",
                "preferred_channels": ["outbox"],
            },
            "encounter": {
                "external_id": visit,
                "department": "cardiology",
                "discharged_at": discharged_at.isoformat(),
                "diagnosis_codes": [DIAGNOSIS_CODE, "I10"],
                "comorbidity_codes": ["E11.9"],
                "diagnosis_text": DIAGNOSIS_TEXT,
                "attending_doctor": DOCTOR,
            },
        }
    )


def stored(runtime: Runtime) -> str:
    """Every value of every table, as the database holds it (no decryption)."""
    with runtime.engine.connect() as connection:
        return "\n".join(
            repr(row)
            for table in metadata.sorted_tables
            for row in connection.execute(text(f'SELECT * FROM "{table.name}"'))  # noqa: S608
        )


async def settle(check: Callable[[], Any], seconds: float = 20) -> Any:
    for _ in range(int(seconds / 0.05)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the journey did not record it in time")


async def test_a_journey_s_patient_data_is_ciphertext_in_the_database_and_plain_through_the_api(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    now = await env.get_current_time()
    first = await register_discharge(runtime, discharge(now))
    # Charlson read the (now encrypted) diagnosis codes: diabetes counts.
    assert any("diabetes" in reason.lower() for reason in first.risk_reasons), first.risk_reasons
    with Session(runtime.engine) as session:
        enrollment = session.get(Enrollment, first.enrollment_id)
        assert enrollment is not None
        patient_id = enrollment.patient_id
    handle = env.client.get_workflow_handle(enrollment.workflow_id)
    await env.sleep(dt.timedelta(days=3, hours=12))
    await handle.signal(
        PatientJourneyWorkflow.answer,
        AnswerEvent(answers={"antiplatelet": "stopped", "sbp": SBP}, text=FREE_TEXT),
    )

    def recorded() -> bool:
        with Session(runtime.engine) as session:
            return bool(
                session.exec(select(Alert).where(Alert.patient_id == patient_id)).first()
                and session.exec(
                    select(Observation).where(Observation.patient_id == patient_id)
                ).first()
            )

    await settle(recorded)

    dump = stored(runtime)
    for secret in (NAME, MRN, VISIT, BIRTH_DATE, DIAGNOSIS_TEXT, DIAGNOSIS_CODE, DOCTOR,
                   FREE_TEXT, str(SBP), "自行停用抗血小板药", "E11.9", "Charlson"):  # fmt: skip
        assert secret not in dump, secret

    # The same MRN discharged again is the same patient: found by its keyed hash.
    again = await register_discharge(runtime, discharge(now, visit=VISIT + "-2"))
    with Session(runtime.engine) as session:
        second = session.get(Enrollment, again.enrollment_id)
        assert second is not None
        assert second.patient_id == patient_id
        assert len(session.exec(select(Patient)).all()) == 1
        assert len(session.exec(select(Encounter)).all()) == 2
        answers = session.exec(select(Answer).where(Answer.patient_id == patient_id)).all()
        assert {a.question_id: a.value for a in answers if a.value is not None} == {
            "antiplatelet": "stopped",
            "sbp": SBP,
        }
        assert next(a.text for a in answers if a.question_id == "_text") == FREE_TEXT

    # Staff read it all in the clear, as before.
    with Session(runtime.engine) as session:
        user = create_user(session, username="root", display_name="root", role=Role.ADMIN)
        token, _ = issue_token(session, user, name="test")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://suifang.test"
    ) as client:
        patient = (await client.get(f"/patients/{patient_id}", headers=headers)).json()
        assert (patient["name"], patient["external_id"], patient["birth_date"]) == (
            NAME,
            MRN,
            BIRTH_DATE,
        )
        observations = (
            await client.get(f"/patients/{patient_id}/observations", headers=headers)
        ).json()
        assert [(o["indicator"], o["value"]) for o in observations] == [("sbp", SBP)]
        journey = (await client.get(f"/journeys/{first.enrollment_id}", headers=headers)).json()
        assert "自行停用抗血小板药" in str(journey)


def test_keys_rotate_and_reindex_every_encrypted_column_and_keyed_hash(runtime: Runtime) -> None:
    old = get_keyring()
    with Session(runtime.engine) as session:
        patient = Patient(external_id=MRN, name=NAME, birth_date=dt.date(1951, 7, 23))
        session.add(patient)
        session.commit()
        session.add(
            Encounter(
                patient_id=patient.id,
                external_id=VISIT,
                department_code="cardiology",
                diagnosis_codes=[DIAGNOSIS_CODE],
                discharged_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            )
        )
        session.commit()
    new = Keyring((generate_key(), *old.encryption_keys), b"a-new-blind-index-key-0123456789")
    configure_keyring(new)
    try:
        counts = rotate_encrypted_columns(runtime.engine)
        assert counts["patient"] == 1
        assert counts["encounter"] == 1
        reindexed = reindex_blind_indexes(runtime.engine)
        assert reindexed["patient.external_id_hash"] == 1
        assert reindexed["encounter.external_id_hash"] == 1
        configure_keyring(Keyring(new.encryption_keys[:1], new.blind_index_key))  # old key gone
        with Session(runtime.engine) as session:
            found = session.exec(
                select(Patient).where(Patient.external_id_hash == identifier_index("mrn", MRN))
            ).one()
            assert (found.name, found.birth_date) == (NAME, dt.date(1951, 7, 23))
            visit = session.exec(
                select(Encounter).where(
                    Encounter.external_id_hash == identifier_index("visit", VISIT)
                )
            ).one()
            assert visit.diagnosis_codes == [DIAGNOSIS_CODE]
    finally:
        configure_keyring(old)


def test_the_migration_encrypts_rows_stored_in_the_clear_and_its_downgrade_decrypts(
    db_url: str,
) -> None:
    engine = create_db_engine(db_url)
    try:
        migrate(engine, "0005")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO department (code, name_zh, name_en, clinical, created_at) "
                    "VALUES ('cardiology', '心内科', 'Cardiology', true, '2026-01-01')"
                )
            )
            patient_id = connection.execute(
                text(
                    "INSERT INTO patient (external_id, name, birth_date, locale, timezone, "
                    "preferred_channels, contact_consent, do_not_contact, created_at, updated_at)"
                    " VALUES (:mrn, :name, :birth, 'zh-CN', 'Asia/Shanghai', '[]', true, false,"
                    " '2026-01-01', '2026-01-01') RETURNING id"
                ),
                {"mrn": MRN, "name": NAME, "birth": dt.date(1951, 7, 23)},
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO encounter (patient_id, external_id, kind, department_code, "
                    "diagnosis_codes, diagnosis_text, comorbidity_codes, procedure_codes, "
                    "attending_doctor, discharged_at, emergency_admission, ed_visits_6_months, "
                    "pregnant, created_at) VALUES (:patient, :visit, 'inpatient', 'cardiology',"
                    " :codes, :diagnosis, '[]', '[]', :doctor, '2026-01-01', false, 0, false,"
                    " '2026-01-01')"
                ),
                {
                    "patient": patient_id,
                    "visit": VISIT,
                    "codes": f'["{DIAGNOSIS_CODE}"]',
                    "diagnosis": DIAGNOSIS_TEXT,
                    "doctor": DOCTOR,
                },
            )

        migrate(engine)

        with engine.connect() as connection:
            raw = repr(connection.execute(text("SELECT * FROM patient")).all())
            raw += repr(connection.execute(text("SELECT * FROM encounter")).all())
        if engine.dialect.name == "sqlite":  # the replaced plaintext is not left in free pages
            database = Path(engine.url.database or "")
            raw += b"".join(
                p.read_bytes() for p in database.parent.glob(database.name + "*")
            ).decode("utf-8", errors="replace")
        for secret in (NAME, MRN, BIRTH_DATE, VISIT, DIAGNOSIS_CODE, DIAGNOSIS_TEXT, DOCTOR):
            assert secret not in raw, secret
        with Session(engine) as session:
            patient = session.exec(
                select(Patient).where(Patient.external_id_hash == identifier_index("mrn", MRN))
            ).one()
            assert (patient.external_id, patient.name, patient.birth_date) == (
                MRN,
                NAME,
                dt.date(1951, 7, 23),
            )
            encounter = session.exec(select(Encounter)).one()
            assert encounter.patient_id == patient.id  # the table rebuild cascaded nothing
            assert (encounter.diagnosis_codes, encounter.diagnosis_text) == (
                [DIAGNOSIS_CODE],
                DIAGNOSIS_TEXT,
            )

        command.downgrade(alembic_config(engine), "0005")
        with engine.connect() as connection:
            name, mrn, birth = connection.execute(
                text("SELECT name, external_id, birth_date FROM patient")
            ).one()
            codes = connection.execute(text("SELECT diagnosis_codes FROM encounter")).scalar()
        assert (name, mrn, str(birth)) == (NAME, MRN, BIRTH_DATE)
        assert DIAGNOSIS_CODE in str(codes)
    finally:
        engine.dispose()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_its_wal_and_the_key_file_are_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a typical login umask: files 0644, directories 0755
    try:
        data_dir = tmp_path / "var"
        Keyring.load_or_create(data_dir)
        engine = create_db_engine(f"sqlite:///{data_dir / 'suifang.db'}")
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (x TEXT)"))
            connection.execute(sa.text("INSERT INTO t VALUES ('x')"))
        files = {p.name: mode(p) for p in data_dir.iterdir()}
        engine.dispose()
    finally:
        os.umask(previous)
    assert mode(data_dir) == 0o700
    assert {"suifang.db", "suifang.db-wal", "suifang.db-shm", "keys.json"} <= set(files)
    assert files == dict.fromkeys(files, 0o600)


def test_files_an_older_version_left_readable_are_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    database = data_dir / "suifang.db"
    for path in (database, data_dir / "suifang.db-wal"):
        path.touch()
        path.chmod(0o644)
    Keyring.load_or_create(data_dir)
    create_db_engine(f"sqlite:///{database}").dispose()
    assert mode(data_dir) == 0o700
    assert mode(database) == 0o600
    assert mode(data_dir / "suifang.db-wal") == 0o600


def test_private_umask_makes_files_owner_only_and_the_cli_gives_it_back(tmp_path: Path) -> None:
    from suifang.core.cli import main as cli_main

    previous = os.umask(0o022)
    try:
        with private_umask():
            (tmp_path / "inside").touch()
        (tmp_path / "after").touch()
        assert cli_main(["keys", "generate"]) == 0
        assert os.umask(0o022) == 0o022  # main restored it
    finally:
        os.umask(previous)
    assert mode(tmp_path / "inside") == 0o600
    assert mode(tmp_path / "after") == 0o644


def test_docs_security_lists_exactly_the_encrypted_columns_and_keyed_hashes() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "security.md").read_text("utf-8")
    at_rest = docs.split("## Data at rest", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, set[str]] = {}
    hashes: set[tuple[str, str]] = set()
    for line in at_rest.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if re.fullmatch(r"`\w+`", cells[0]) and len(cells) == 2:
            documented[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[1]))
        elif match := re.fullmatch(r"`(\w+)\.(\w+)`.*", cells[0]):
            hashes.add((match.group(1), match.group(2)))
    assert documented == {t: set(c) for t, c in encrypted_columns().items()}
    assert hashes == set(BLIND_INDEXES)
