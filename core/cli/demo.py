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
from suifang.core.yaml_input import read_yaml
from suifang.tickets.oncall import RosterFile, import_roster
from suifang.workflows.intake import DischargeIn, register_discharge

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
            enrollment = cli_run(register_discharge(runtime, DischargeIn.model_validate(data)))
        except SuifangError as exc:
            raise SuifangError(f"demo patient {sample['patient']['name']}: {exc}") from None
        first = enrollment.schedule[0] if enrollment.schedule else None
        rows.append(
            (
                enrollment.enrollment_id,
                sample["patient"]["name"],
                enrollment.pathway_id,
                enrollment.risk_tier,
                first.key if first else "-",
            )
        )
    print_table(["JOURNEY", "PATIENT", "PATHWAY", "RISK", "FIRST TOUCHPOINT"], rows)
    minutes = 1440 / time_scale
    print(f"\nDemo time: one pathway day every {minutes:g} real minute(s).")
    print("Watch messages arrive:     suifang outbox --follow")
    print("Answer one abnormally:     suifang journeys answer <JOURNEY> chest_pain=yes")
    print("See the alert it raised:   suifang journeys show <JOURNEY>")
    print(
        "Write like a patient:      suifang journeys answer <JOURNEY> --text '胸口特别闷，出冷汗'"
    )
    print("The on-call is paged:      suifang outbox · acknowledge: suifang tickets ack <TICKET>")


def _import_demo_roster(runtime: Any) -> None:
    """The example on-call roster, so an emergency pages someone (shown in the outbox)."""
    path = Path(__file__).resolve().parents[2] / "templates" / "oncall" / "example-roster.yaml"
    _, data = read_yaml(path.read_text(encoding="utf-8"))
    with Session(runtime.engine) as session:
        import_roster(session, RosterFile.model_validate(data))
