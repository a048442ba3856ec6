"""The workload simulator: deterministic forecasts, plausible workloads, and agreement with the
real workflows (``--verify``) for every built-in pathway."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.workflows.kpis import KPI_DEFINITIONS
from suifang.workflows.simulation import (
    TEMPLATES,
    PatientBehaviour,
    SimulationConfig,
    build_simulator,
    simulate,
)
from suifang.workflows.simulation_verify import pick_sample, verify_sample

BUILT_IN = ["pci", "diabetes", "hip-replacement", "post-checkup", "hypertension", "general"]


@pytest.fixture(scope="module")
def catalog():  # type: ignore[no-untyped-def]
    return Plugins.load(entrypoints=False).pathway_catalog()


def test_same_seed_same_forecast_other_seed_other_forecast(catalog) -> None:  # type: ignore[no-untyped-def]
    config = SimulationConfig(pathway="pci", patients_per_day=40, days=5, seed=7)
    first = simulate(config, catalog.get("pci"))
    again = simulate(config, catalog.get("pci"))
    other = simulate(config.model_copy(update={"seed": 8}), catalog.get("pci"))
    strip = {"elapsed_seconds"}
    assert first.model_dump(exclude=strip) == again.model_dump(exclude=strip)
    assert first.model_dump(exclude=strip) != other.model_dump(exclude=strip)


def test_forecast_counts_add_up(catalog) -> None:  # type: ignore[no-untyped-def]
    config = SimulationConfig(pathway="pci", patients_per_day=50, days=10, seed=2)
    result = simulate(config, catalog.get("pci"))
    assert result.journeys == 500
    assert sum(result.journey_outcomes.values()) == 500
    # 35 days after the last discharge every 30-day PCI journey has ended.
    assert set(result.journey_outcomes) <= {"completed", "lost"}
    touchpoints = result.touchpoints
    assert touchpoints["answered"] + touchpoints["missed"] <= touchpoints["sent"]
    response_rate = result.kpi("response_rate")
    assert 70 < response_rate.value < 90  # type: ignore[operator]  # the answer rate is 0.8
    assert response_rate.numerator == touchpoints["answered"]
    assert response_rate.denominator == touchpoints["answered"] + touchpoints["missed"]
    assert result.tickets == sum(result.tickets_by_source.values())
    assert result.tickets == sum(result.tickets_by_tier.values())
    assert sum(result.daily[d]["discharges"] for d in range(len(result.daily))) == 500
    for key in ("first_response_sla", "resolution_sla"):
        sla = result.kpi(key)
        assert sla.denominator is not None
        assert sla.denominator + sla.pending <= result.tickets
    # Every department that received tickets appears in the staffing plan.
    routed = {d for d in result.tickets_by_department if d != "-"}
    assert routed <= set(result.staffing)
    json.loads(result.model_dump_json())  # exportable


def test_the_forecast_reports_kpis_as_the_kpi_report_defines_them(catalog) -> None:  # type: ignore[no-untyped-def]
    config = SimulationConfig(
        pathway="pci",
        patients_per_day=20,
        days=3,
        tail_days=10,  # some journeys are still running when the forecast ends
        behaviour=PatientBehaviour(answer_rate=0.5, abnormal_rate=0.3),
    )
    result = simulate(config, catalog.get("pci"))
    for kpi in result.kpis:
        assert kpi.definition == KPI_DEFINITIONS[kpi.key].definition
    # Lost to follow-up: journeys lost ÷ journeys that ended, not ÷ every journey.
    lost = result.kpi("lost_to_follow_up_rate")
    ended = sum(result.journey_outcomes.get(s, 0) for s in ("completed", "lost", "stopped"))
    assert ended < result.journeys
    assert (lost.numerator, lost.denominator) == (result.journey_outcomes.get("lost", 0), ended)
    alerts = result.kpi("alert_rate")
    assert alerts.numerator == sum(result.alerts_by_tier.values())
    assert alerts.denominator == result.touchpoints["answered"]
    assert result.kpi("tickets_opened").numerator == result.tickets


def test_behaviour_drives_the_workload(catalog) -> None:  # type: ignore[no-untyped-def]
    template = catalog.get("pci")
    calm = simulate(
        SimulationConfig(
            pathway="pci",
            patients_per_day=60,
            days=5,
            behaviour=PatientBehaviour(abnormal_rate=0.0, message_rate=0.0),
        ),
        template,
    )
    worried = simulate(
        SimulationConfig(
            pathway="pci",
            patients_per_day=60,
            days=5,
            behaviour=PatientBehaviour(abnormal_rate=0.5, message_rate=0.3),
        ),
        template,
    )
    assert sum(calm.alerts_by_tier.values()) == 0
    assert "clinical_alert" not in calm.tickets_by_source
    assert sum(worried.alerts_by_tier.values()) > 50
    assert worried.tickets_by_source["patient_message"] > 0
    silent = simulate(
        SimulationConfig(
            pathway="pci",
            patients_per_day=20,
            days=2,
            behaviour=PatientBehaviour(answer_rate=0.0, message_rate=0.0),
        ),
        template,
    )
    assert silent.touchpoints["answered"] == 0
    assert silent.journey_outcomes == {"lost": 40}
    assert silent.tickets_by_source.get("non_responder", 0) > 0


def test_more_staff_meets_more_slas(catalog) -> None:  # type: ignore[no-untyped-def]
    base = SimulationConfig(
        pathway="pci",
        patients_per_day=150,
        days=5,
        behaviour=PatientBehaviour(abnormal_rate=0.3),
        default_staff=1,
    )
    short = simulate(base, catalog.get("pci"))
    staffed = simulate(base.model_copy(update={"default_staff": 6}), catalog.get("pci"))
    sla, p90 = "first_response_sla", "time_to_first_response_p90"
    assert staffed.kpi(sla).value > short.kpi(sla).value  # type: ignore[operator]
    assert staffed.kpi(p90).value < short.kpi(p90).value  # type: ignore[operator]


# The workflows' agreement with the simulator does not depend on the database: SQLite only.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("pathway_id", BUILT_IN)
async def test_real_workflows_agree_with_the_simulator(
    pathway_id: str, catalog, runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:  # type: ignore[no-untyped-def]
    config = SimulationConfig(
        pathway=pathway_id,
        patients_per_day=30,
        days=2,
        tail_days=40,
        seed=11,
        behaviour=PatientBehaviour(abnormal_rate=0.35, message_rate=0.15, answer_rate=0.7),
    )
    simulator = build_simulator(config, catalog.get(pathway_id))
    simulator.run()
    sample = pick_sample(simulator, 3, seed=config.seed)
    report = await verify_sample(simulator, sample, runtime, journey_worker)
    assert report.checked == 3
    assert report.ok, [p.differences for p in report.patients if not p.matches]
    # The sample covers more than the happy path.
    outcomes = [p.simulated for p in report.patients]
    assert any(o["alerts"] or o["tickets"] or o["missed"] for o in outcomes)


# --------------------------------------------------------------------------- the CLI


def test_cli_prints_the_forecast_and_staffing_plan(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    args = ("simulate", "--pathway", "pci", "--patients-per-day", "40", "--days", "4")
    code, out, err = cli(*args, "--staff", "cardiology=4", "--plot", str(tmp_path / "load.svg"))
    assert code == 0, err
    assert "Forecast for pci v1" in out
    assert "160: completed" in out  # 40 a day for 4 days, followed until every journey ended
    assert "Staffing plan" in out
    cardiology = next(line for line in out.splitlines() if line.startswith("cardiology"))
    assert cardiology.split()[1] == "4"
    svg = (tmp_path / "load.svg").read_text()
    assert svg.startswith("<?xml")
    assert "tickets routed" in svg

    code, out, err = cli(*args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["journeys"] == 160
    assert data["config"]["staff"] == {}
    assert len(data["daily"]) >= 4
    # The same seed, the same forecast, whichever way it is printed.
    code, again, _ = cli(*args, "--json")
    strip = lambda d: {k: v for k, v in d.items() if k != "elapsed_seconds"}  # noqa: E731
    assert strip(json.loads(again)) == strip(data)


def test_the_chart_names_the_days_everyone_is_greeted(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    # 2027's Spring Festival is on 6 February; 立春 two days before.
    args = ("simulate", "--pathway", "hypertension", "--patients-per-day", "20", "--days", "10")
    args += ("--start", "2027-01-30", "--tail-days", "0")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    daily = {d["date"]: d for d in json.loads(out)["daily"]}
    festival = daily["2027-02-06"]
    assert festival["greetings"]["spring_festival"] >= 100  # every journey open that day
    assert festival["messages"] >= festival["greetings"]["spring_festival"]
    assert "spring_festival" not in daily["2027-02-05"]["greetings"]

    code, _, err = cli(*args, "--plot", str(tmp_path / "load.svg"))
    assert code == 0, err
    svg = (tmp_path / "load.svg").read_text()
    assert "spring_festival" in svg
    assert "lichun" in svg
    assert "birthday" not in svg  # spread over the year: not a spike to explain


def test_cli_dry_runs_a_template_file(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    template = tmp_path / "short-pci.yaml"
    source = TEMPLATES / "pathways" / "pci.yaml"
    template.write_text(
        source.read_text("utf-8").replace("id: pci", "id: short-pci", 1), encoding="utf-8"
    )
    code, out, err = cli(
        "simulate", "--template", str(template), "--patients-per-day", "10", "--days", "2"
    )
    assert code == 0, err
    assert "Forecast for short-pci v1" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\nversion: one\n", encoding="utf-8")
    code, _, err = cli("simulate", "--template", str(broken))
    assert code != 0
    assert "broken.yaml" in err
    assert "version" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pathway", "nope"), "unknown pathway 'nope'"),
        (("--pathway", "pci", "--answer-rate", "1.5"), "--answer-rate"),
        (("--pathway", "pci", "--staff", "cardiology"), "DEPARTMENT=PEOPLE"),
        (("--pathway", "pci", "--plot", "chart.gif"), ".png or .svg"),
        (("--pathway", "pci", "--start", "next monday"), "--start: 'next monday' is not a date"),
        ((), "--pathway"),
    ],
)
def test_cli_rejects_bad_arguments_clearly(
    cli: Callable[..., tuple[int, str, str]], args: tuple[str, ...], message: str
) -> None:
    code, _, err = cli("simulate", *args)
    assert code != 0
    assert message in err
    assert "Traceback" not in err


def test_cli_verify_runs_sampled_patients_through_the_real_workflows(
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    code, out, err = cli(
        "simulate", "--pathway", "pci", "--patients-per-day", "20", "--days", "2",
        "--abnormal-rate", "0.4", "--verify", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)["verify"]
    assert (report["checked"], report["matched"]) == (2, 2)
    assert all(p["simulated"] == p["real"] for p in report["patients"])


def test_cli_forecasts_from_the_start_asked_and_checks_plotting_first(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = ("simulate", "--pathway", "pci", "--patients-per-day", "5", "--days", "2")
    code, out, err = cli(*args, "--start", "2027-01-04", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["config"]["start"] == "2027-01-04"
    assert data["daily"][0]["date"] == "2027-01-04"
    # Without matplotlib, --plot is refused at once, not after the whole simulation.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = cli(*args, "--plot", str(tmp_path / "load.svg"))
    assert code != 0
    assert "--plot needs matplotlib: pip install 'suifang[plot]'" in err
    assert "Forecast" not in out
