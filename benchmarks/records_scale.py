"""Health records at hospital scale: a patient's record, an indicator's trend and the monthly
review, timed on a database holding ``--observations`` readings and ``--tickets`` tickets.

The data is generated straight into the app database (SQLite in a temporary directory, or the
PostgreSQL given by ``--database-url``) through the same models and encrypted column types
the platform writes with, spread over ``--patients`` patients and twelve months. Then each
question is asked ``--repeat`` times and the median reported against the bound (2 s): the
record of the patient with the most readings, that patient's systolic trend (with its chart),
and a month's review (KPIs, hotspots, workload, as the HTML page; the PDF is timed too,
outside the bound: most of it is embedding the CJK font). A bare ``count(*)`` over
each table is timed as the same run's baseline.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness import log, machine, summary_line
from sqlalchemy import func, insert, text
from sqlmodel import Session, select

from suifang.core.config import load_settings
from suifang.core.db import create_db_engine
from suifang.core.models import Encounter, Enrollment, Observation, Patient, Ticket
from suifang.core.pathway_checks import load_indicators
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.security.crypto import Keyring, configure_keyring, generate_key
from suifang.core.seed import prepare_database
from suifang.workflows.health_record import health_record
from suifang.workflows.monthly_report import build_monthly_report, monthly_html, monthly_pdf
from suifang.workflows.trends import indicator_trend, trend_svg

BOUND_SECONDS = 2.0
CHUNK = 5000
CATEGORIES = ["parking", "food", "billing", "medication", "wound", "staff_attitude", "waiting"]
DEPARTMENTS = ["cardiology", "orthopaedics", "endocrinology", "general_surgery"]
TEXTS = [
    "停车场太难停车了",
    "饭菜太咸",
    "收费看不懂",
    "这个药饭前吃还是饭后吃",
    "伤口有点红",
    "护士态度很好",
]


def _keys() -> None:
    # Throw-away keys: the generated data is deleted with the run.
    configure_keyring(Keyring((generate_key(),), base64.urlsafe_b64encode(os.urandom(32))))


def _bulk(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(table), rows[start : start + CHUNK])
    session.commit()


def generate(runtime: Runtime, patients: int, observations: int, tickets: int) -> int:
    """Fill the database; the id of the patient with the most readings."""
    rng = random.Random(7)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with Session(runtime.engine) as session:
        _bulk(
            session,
            Patient,
            [
                {"external_id": f"SCALE-{i}", "name": f"患者{i}", "locale": "zh-CN"}
                for i in range(patients)
            ],
        )
        ids = list(session.exec(select(Patient.id)).all())
        _bulk(
            session,
            Encounter,
            [
                {
                    "patient_id": pid,
                    "external_id": f"SV-{pid}",
                    "department_code": DEPARTMENTS[pid % len(DEPARTMENTS)],
                    "discharged_at": start + dt.timedelta(hours=rng.randrange(24 * 330)),
                }
                for pid in ids
            ],
        )
        encounters = dict(session.exec(select(Encounter.patient_id, Encounter.id)).all())
        _bulk(
            session,
            Enrollment,
            [
                {
                    "patient_id": pid,
                    "encounter_id": encounters[pid],
                    "department_code": DEPARTMENTS[pid % len(DEPARTMENTS)],
                    "pathway_id": "pci",
                    "pathway_version": 1,
                    "risk_tier": "medium",
                    "workflow_id": f"scale-{pid}-{uuid.uuid4().hex[:6]}",
                    "status": "completed",
                    "enrolled_at": start,
                }
                for pid in ids
            ],
        )
        log(f"{patients:,} patients, encounters and enrollments")
        # A tenth of the patients have most of the readings, as home-monitoring ones do.
        heavy = ids[: max(1, len(ids) // 10)]
        done = 0
        while done < observations:
            batch = []
            for _ in range(min(CHUNK * 4, observations - done)):
                pid = rng.choice(heavy) if rng.random() < 0.8 else rng.choice(ids)
                indicator = rng.choice(("sbp", "dbp", "glucose_fasting", "weight"))
                batch.append(
                    {
                        "event_key": f"scale-{done + len(batch)}",
                        "patient_id": pid,
                        "indicator": indicator,
                        "value": rng.uniform(100, 170)
                        if indicator == "sbp"
                        else rng.uniform(4, 90),
                        "observed_at": start + dt.timedelta(minutes=rng.randrange(60 * 24 * 340)),
                        "source": "device",
                    }
                )
            _bulk(session, Observation, batch)
            done += len(batch)
            log(f"{done:,} observations")
        rows = []
        for number in range(tickets):
            opened = start + dt.timedelta(minutes=rng.randrange(60 * 24 * 340))
            resolved = (
                opened + dt.timedelta(hours=rng.uniform(1, 72)) if rng.random() < 0.8 else None
            )
            rows.append(
                {
                    "workflow_id": f"scale-ticket-{number}",
                    "source": "patient_message",
                    "patient_id": rng.choice(ids),
                    "category": rng.choice(CATEGORIES),
                    "clinical": False,
                    "department_code": rng.choice(DEPARTMENTS),
                    "tier": "L2",
                    "priority": "routine",
                    "status": "closed" if resolved else "assigned",
                    "summary": rng.choice(TEXTS),
                    "opened_at": opened,
                    "resolved_at": resolved,
                    "assignee": f"nurse{rng.randrange(40)}",
                }
            )
        _bulk(session, Ticket, rows)
        log(f"{tickets:,} tickets")
        most = session.exec(
            select(Observation.patient_id, func.count())
            .group_by(Observation.patient_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    return int(most[0])


def timed(repeat: int, question: Any) -> float:
    spent = []
    for _ in range(repeat):
        began = time.perf_counter()
        question()
        spent.append(time.perf_counter() - began)
    return statistics.median(spent)


async def main(args: Any) -> str:
    _keys()
    with tempfile.TemporaryDirectory(prefix="suifang-scale-") as workdir:
        url = args.database_url or f"sqlite:///{Path(workdir) / 'app.db'}"
        settings = load_settings(data_dir=Path(workdir) / "var", database_url=url)
        runtime = Runtime(
            settings=settings,
            engine=create_db_engine(url),
            plugins=Plugins.load(entrypoints=False),
        )
        if url.startswith("postgresql"):
            with runtime.engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        prepare_database(runtime.engine)
        began = time.perf_counter()
        patient = generate(runtime, args.patients, args.observations, args.tickets)
        generated = time.perf_counter() - began
        registry = load_indicators()

        def record() -> None:
            with Session(runtime.engine) as session:
                health_record(session, patient)

        def trend() -> None:
            with Session(runtime.engine) as session:
                trend_svg(indicator_trend(session, patient, "sbp", registry))

        def monthly() -> None:
            with Session(runtime.engine) as session:
                monthly_html(
                    build_monthly_report(session, month="2026-06", timezone="Asia/Shanghai")
                )

        def monthly_as_pdf() -> None:
            with Session(runtime.engine) as session:
                monthly_pdf(
                    build_monthly_report(session, month="2026-06", timezone="Asia/Shanghai")
                )

        def baseline() -> None:
            with Session(runtime.engine) as session:
                session.exec(select(func.count()).select_from(Observation)).one()
                session.exec(select(func.count()).select_from(Ticket)).one()

        results = {
            "record_s": timed(args.repeat, record),
            "trend_s": timed(args.repeat, trend),
            "monthly_s": timed(args.repeat, monthly),
            # Reported, not bound: about 1.5 s of it is embedding the CJK font (parse, subset).
            "monthly_pdf_s": timed(args.repeat, monthly_as_pdf),
            "count_baseline_s": timed(args.repeat, baseline),
        }
        with Session(runtime.engine) as session:
            readings = session.exec(
                select(func.count())
                .select_from(Observation)
                .where(Observation.patient_id == patient)
            ).one()
        runtime.close()
    slowest = max(results["record_s"], results["trend_s"], results["monthly_s"])
    return summary_line(
        "records_scale",
        {
            "database": url.split(":", 1)[0],
            "observations": args.observations,
            "tickets": args.tickets,
            "patients": args.patients,
            "patient_readings": readings,
            "generate_s": round(generated, 1),
            **{k: round(v, 3) for k, v in results.items()},
            "bound_s": BOUND_SECONDS,
            "within_bound": "yes" if slowest <= BOUND_SECONDS else "no",
            **machine(),
        },
    )
