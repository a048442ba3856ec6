"""``suifang demo``: a handful of sample patients on the running platform, on demo time."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import Session

from suifang.core.cli.context import cli_run, cli_runtime
from suifang.core.cli.output import print_table
from suifang.core.db import utcnow
from suifang.core.errors import SuifangError
from suifang.core.runtime import Runtime
from suifang.core.yaml_input import read_yaml
from suifang.tickets.oncall import RosterFile, import_roster
from suifang.workflows.intake import DischargeIn, PatientIn, register_discharge
from suifang.workflows.lab_results import ResultFields, ResultReport, record_results

# A year of each sample patient's clinic readings before this stay, oldest first, one a month
# (HbA1c and LDL once a quarter), as the HIS would have sent them: so their health record,
# trends and printable report have something to show at once.
HISTORY: dict[str, dict[str, list[float]]] = {
    "pci": {
        "sbp": [152, 148, 150, 145, 141, 138, 136, 134, 132, 130, 128, 131],
        "dbp": [92, 90, 91, 88, 86, 85, 84, 82, 80, 80, 78, 79],
        "ldl": [3.2, 2.6, 2.1, 1.7],
    },
    "diabetes": {
        "glucose_fasting": [9.8, 9.1, 8.7, 8.2, 8.0, 7.6, 7.4, 7.1, 6.9, 7.0, 6.8, 6.6],
        "hba1c": [8.6, 8.1, 7.6, 7.2],
        "weight": [86.0, 85.6, 85.1, 84.7, 84.0, 83.6, 83.1, 82.9, 82.4, 82.0, 81.7, 81.5],
    },
    "hip-replacement": {"pain_score": [8, 8, 7, 7, 6, 6, 5, 4, 4, 3, 3, 2]},
    "post-checkup": {
        "glucose_fasting": [5.8, 5.9, 6.0, 6.1, 6.0, 6.2, 6.1, 6.3, 6.2, 6.4, 6.3, 6.4],
        "bmi": [25.9, 25.8, 25.8, 25.6, 25.5, 25.5, 25.3, 25.2, 25.1, 25.0, 24.9, 24.8],
    },
    "hypertension": {
        "sbp": [162, 158, 155, 150, 149, 146, 144, 141, 139, 142, 138, 136],
        "dbp": [100, 98, 97, 95, 94, 93, 92, 90, 89, 90, 88, 87],
    },
    "general": {"weight": [61.0, 60.8, 61.2, 60.5, 60.1, 59.8, 59.2, 58.6, 58.1, 57.7, 57.5, 57.2]},
}

SAMPLES: list[dict[str, Any]] = [
    {
        "pathway": "pci",
        "patient": {
            "name": "王秀英",
            "sex": "female",
            "birth_date": "1952-04-18",
            "phone": "13800138001",
        },
        "encounter": {
            "department": "cardiology",
            "diagnosis_codes": ["I21.4", "I10"],
            "procedure_codes": ["36.06"],
            "diagnosis_text": "急性非ST段抬高型心肌梗死",
            "length_of_stay_days": 6,
            "emergency_admission": True,
        },
    },
    {
        "pathway": "diabetes",
        "patient": {
            "name": "李建国",
            "sex": "male",
            "birth_date": "1961-09-02",
            "phone": "13800138002",
        },
        "encounter": {
            "department": "endocrinology",
            "diagnosis_codes": ["E11.9"],
            "length_of_stay_days": 5,
        },
    },
    {
        "pathway": "hip-replacement",
        "patient": {
            "name": "张桂兰",
            "sex": "female",
            "birth_date": "1944-12-11",
            "phone": "13800138003",
        },
        "encounter": {
            "department": "orthopaedics",
            "diagnosis_codes": ["S72.0"],
            "procedure_codes": ["81.51"],
            "length_of_stay_days": 9,
            "emergency_admission": True,
        },
    },
    {
        "pathway": "post-checkup",
        "patient": {
            "name": "陈静",
            "sex": "female",
            "birth_date": "1985-06-30",
            "phone": "13800138004",
        },
        "encounter": {
            "department": "health_checkup",
            "kind": "checkup",
            "diagnosis_codes": ["R73.0"],
            "length_of_stay_days": 0,
        },
    },
    {
        "pathway": "hypertension",
        "patient": {
            "name": "刘洋",
            "sex": "male",
            "birth_date": "1970-01-15",
            "phone": "13800138005",
        },
        "encounter": {
            "department": "cardiology",
            "diagnosis_codes": ["I10"],
            "length_of_stay_days": 3,
        },
    },
    {
        "pathway": "general",
        "patient": {
            "name": "Emily Chen",
            "sex": "female",
            "birth_date": "1990-08-08",
            "locale": "en",
            "email": "emily.chen@example.org",
        },
        "encounter": {
            "department": "general_medicine",
            "diagnosis_codes": ["J18.9"],
            "length_of_stay_days": 4,
        },
    },
]


def demo(
    time_scale: Annotated[
        float, typer.Option(help="Pathway days per real day; 1440 = one day a minute.")
    ] = 1440,
    count: Annotated[
        int, typer.Option(min=1, max=len(SAMPLES), help="How many sample patients.")
    ] = len(SAMPLES),
) -> None:
    """Enroll sample patients (several pathways) on the running platform (`suifang up`)."""
    runtime = cli_runtime()
    _import_demo_roster(runtime)
    known = set(runtime.catalog.ids())
    run = uuid.uuid4().hex[:6]
    now = utcnow()
    rows = []
    for index, sample in enumerate(SAMPLES[:count], start=1):
        if sample["pathway"] not in known:
            continue
        data = {
            "pathway": sample["pathway"],
            "time_scale": time_scale,
            "patient": {"external_id": f"DEMO-{run}-{index}", **sample["patient"]},
            "encounter": {
                "external_id": f"DEMO-{run}-V{index}",
                "discharged_at": (now - dt.timedelta(minutes=1)).isoformat(),
                **sample["encounter"],
            },
        }
        try:
            discharge = DischargeIn.model_validate(data)
            # The readings before this stay first: the tags they give can choose a variant.
            _record_history(runtime, sample["pathway"], discharge.patient, now, f"{run}-{index}")
            enrollment = cli_run(register_discharge(runtime, discharge))
        except SuifangError as exc:
            raise SuifangError(f"demo patient {sample['patient']['name']}: {exc}") from None
        first = enrollment.schedule[0] if enrollment.schedule else None
        rows.append(
            (
                enrollment.enrollment_id,
                enrollment.patient_id,
                sample["patient"]["name"],
                enrollment.pathway_id,
                enrollment.risk_tier,
                first.key if first else "-",
            )
        )
    print_table(["JOURNEY", "PATIENT ID", "PATIENT", "PATHWAY", "RISK", "FIRST TOUCHPOINT"], rows)
    minutes = 1440 / time_scale
    print(f"\nDemo time: one pathway day every {minutes:g} real minute(s).")
    print("Watch messages arrive:     suifang outbox --follow")
    print("Answer one abnormally:     suifang journeys answer <JOURNEY> chest_pain=yes")
    print("See the alert it raised:   suifang journeys show <JOURNEY>")
    print(
        "Write like a patient:      suifang journeys answer <JOURNEY> --text '胸口特别闷，出冷汗'"
    )
    print("The on-call is paged:      suifang outbox · acknowledge: suifang tickets ack <TICKET>")
    print("A year of readings each:   suifang patients show <PATIENT ID> --record")
    print("A printable report:        suifang patients report <PATIENT ID> --out report.pdf")
    print(f"The month's review:        suifang report monthly --month {now:%Y-%m} --out month.pdf")


def _record_history(
    runtime: Runtime, pathway: str, patient: PatientIn, now: dt.datetime, key: str
) -> None:
    """The sample patient's readings of the past year, through the lab-results intake (one
    report a visit, nothing flagged: nothing to follow up)."""
    visits: dict[int, list[ResultFields]] = {}
    for indicator, values in HISTORY.get(pathway, {}).items():
        every = 12 // len(values)
        for number, value in enumerate(values):
            months_ago = 12 - number * every
            taken = now - dt.timedelta(days=30 * months_ago)
            visits.setdefault(months_ago, []).append(
                ResultFields(indicator, indicator, str(value), None, None, None, taken)
            )
    for months_ago, results in sorted(visits.items(), reverse=True):
        report = ResultReport(
            results=results,
            report_id=f"DEMO-{key}-M{months_ago}",
            taken_at=results[0].observed_at,
            inpatient=True,
            source="demo",
        )
        cli_run(
            record_results(
                runtime, report, patient, key=report.report_id, department="health_checkup"
            )
        )


def _import_demo_roster(runtime: Any) -> None:
    """The example on-call roster, so an emergency pages someone (shown in the outbox)."""
    path = Path(__file__).resolve().parents[2] / "templates" / "oncall" / "example-roster.yaml"
    _, data = read_yaml(path.read_text(encoding="utf-8"))
    with Session(runtime.engine) as session:
        import_roster(session, RosterFile.model_validate(data))
