"""``suifang simulate``: forecast a pathway's workload before rolling it out."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError

from suifang.core.cli.context import cli_run, cli_settings
from suifang.core.cli.output import emit_json, print_kv, print_table
from suifang.core.errors import ValidationFailed
from suifang.core.pathways import PathwayCatalog, PathwayTemplate, load_template
from suifang.core.plugins import Plugins
from suifang.workflows.simulation import (
    SERVICE_MINUTES,
    WORKDAY_MINUTES,
    PatientBehaviour,
    SimulationConfig,
    SimulationResult,
    build_simulator,
)

__all__ = ["simulate"]


def _staff(values: list[str]) -> dict[str, int]:
    staff = {}
    for value in values:
        department, _, count = value.partition("=")
        if not department or not count.isdigit() or int(count) < 1:
            raise ValidationFailed(
                f"--staff {value!r}: expected DEPARTMENT=PEOPLE, e.g. cardiology=3"
            )
        staff[department.strip()] = int(count)
    return staff


def _template(
    catalog: PathwayCatalog, pathway: str | None, template_file: Path | None
) -> PathwayTemplate:
    if template_file is not None:
        return load_template(template_file)  # errors say file:line: field: reason
    if not pathway:
        raise ValidationFailed("give --pathway ID (see `suifang pathways list`) or --template FILE")
    if pathway not in catalog.ids():
        raise ValidationFailed(
            f"--pathway: unknown pathway {pathway!r}; known: {', '.join(catalog.ids())}"
        )
    return catalog.get(pathway)


@contextlib.contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[float], None] | None]:
    """A progress bar on a terminal (stderr); nothing when piped."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _counts(counts: dict[str, int]) -> str:
    return " · ".join(f"{name} {count:,}" for name, count in counts.items() if count) or "none"


def _mean_peak(values: list[int]) -> str:
    if not values:
        return "0 / 0"
    return f"{sum(values) / len(values):,.1f} / {max(values):,}"


def print_forecast(result: SimulationResult, template: PathwayTemplate) -> None:
    config = result.config
    name = template.name.zh_cn if template.name.zh_cn else template.id
    print(
        f"Forecast for {template.id} v{template.version} ({name}): "
        f"{config.patients_per_day:,} discharges/day × {config.days} days, "
        f"followed {config.tail_days} days more; seed {config.seed}"
    )
    print(f"simulated in {result.elapsed_seconds:.1f} s\n")
    print_kv(
        [
            ("journeys", f"{result.journeys:,}: {_counts(result.journey_outcomes)}"),
            ("touchpoints", _counts(result.touchpoints)),
            ("messages sent", _counts(result.messages)),
            ("alerts", _counts(result.alerts_by_tier)),
            ("tickets", f"{result.tickets:,}: {_counts(result.tickets_by_source)}"),
            ("tickets by tier", _counts(result.tickets_by_tier)),
        ]
    )
    print("\nKPIs (as docs/kpis.md defines them)")
    print_kv([(f"  {kpi.name} {kpi.name_zh}", kpi.display) for kpi in result.kpis])
    daily = result.daily
    print("\nDaily workload (mean / peak per day)")
    print_kv(
        [
            ("  messages", _mean_peak([d["messages"] for d in daily])),
            ("  nurse calls (L2)", _mean_peak([d["nurse_calls"] for d in daily])),
            ("  doctor callbacks (L3)", _mean_peak([d["doctor_callbacks"] for d in daily])),
        ]
    )
    print(
        f"\nStaffing plan ({SERVICE_MINUTES['L2']:.0f} min per nurse call, "
        f"{SERVICE_MINUTES['L3']:.0f} min per doctor callback, "
        f"{WORKDAY_MINUTES // 60}-hour day)"
    )
    print_table(
        [
            "DEPARTMENT",
            "STAFF",
            "TICKETS",
            "MIN/DAY",
            "PEAK MIN/DAY",
            "NEEDED AT PEAK",
            "1ST RESPONSE MET",
        ],
        [
            (
                department,
                int(plan["staff"]),
                f"{plan['tickets']:,.0f}",
                f"{plan['mean_minutes_per_day']:,.0f}",
                f"{plan['peak_minutes_per_day']:,.0f}",
                math.ceil(plan["peak_staff_needed"]),
                _percent(plan["first_response_met"]),
            )
            for department, plan in result.staffing.items()
        ],
    )


def _check_plotting(path: Path) -> None:
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValidationFailed(f"--plot {path}: give a .png or .svg file name")
    try:
        import matplotlib  # noqa: F401 -- only whether it is there
    except ImportError:
        raise ValidationFailed("--plot needs matplotlib: pip install 'suifang[plot]'") from None


def plot_daily(result: SimulationResult, path: Path) -> None:
    """The daily workload as a chart: messages sent (greeting days named), and tickets per
    department (stacked)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValidationFailed("--plot needs matplotlib: pip install 'suifang[plot]'") from None
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValidationFailed(f"--plot {path}: give a .png or .svg file name")
    days = [d["date"] for d in result.daily]
    departments = sorted(result.staffing)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(days, [d["messages"] for d in result.daily], color="#2f6f9f")
    top.set_ylabel("messages sent")
    for index, day in enumerate(result.daily):
        # Birthdays are spread over the year; a festival or solar term greets everyone at once.
        occasions = [o for o in day.get("greetings", {}) if o != "birthday"]
        if occasions:
            top.annotate(
                ", ".join(occasions),
                (index, day["messages"]),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize="x-small",
                rotation=60,
            )
    top.set_title(
        f"{result.config.pathway}: {result.config.patients_per_day} discharges/day, "
        f"seed {result.config.seed}"
    )
    base = [0] * len(days)
    for department in departments:
        counts = [d.get(department, 0) for d in result.daily]
        bottom.bar(days, counts, bottom=base, label=department, width=0.9)
        base = [b + c for b, c in zip(base, counts, strict=True)]
    bottom.set_ylabel("tickets routed")
    if departments:
        bottom.legend(loc="upper left", fontsize="small")
    step = max(1, len(days) // 12)
    bottom.set_xticks(range(0, len(days), step), [days[i] for i in range(0, len(days), step)])
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise ValidationFailed(f"--plot {path}: cannot write: {exc.strerror}") from None
    finally:
        plt.close(figure)


def simulate(
    pathway: Annotated[str | None, typer.Option(help="Pathway id, e.g. pci.")] = None,
    template_file: Annotated[
        Path | None,
        typer.Option("--template", help="Dry-run a template file that is not installed yet."),
    ] = None,
    patients_per_day: Annotated[int, typer.Option(help="Discharges enrolled per day.")] = 300,
    days: Annotated[int, typer.Option(help="Days of discharges.")] = 60,
    start: Annotated[
        str | None,
        typer.Option(help="First day of discharges, YYYY-MM-DD (default: today)."),
    ] = None,
    tail_days: Annotated[int, typer.Option(help="Days simulated after the last discharge.")] = 35,
    seed: Annotated[int, typer.Option(help="Same seed, same forecast.")] = 1,
    answer_rate: Annotated[float, typer.Option(help="Share of questions answered.")] = 0.8,
    answer_delay_hours: Annotated[float, typer.Option(help="Typical time to answer.")] = 4.0,
    abnormal_rate: Annotated[
        float, typer.Option(help="Share of answers that are abnormal.")
    ] = 0.08,
    message_rate: Annotated[float, typer.Option(help="Free-text messages per touchpoint.")] = 0.05,
    staff: Annotated[
        list[str] | None, typer.Option(help="People per department, e.g. cardiology=3 (repeat).")
    ] = None,
    default_staff: Annotated[int, typer.Option(help="People in departments not named.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write the daily workload chart (.png or .svg).")
    ] = None,
    verify: Annotated[
        int,
        typer.Option(
            help="Also run N sampled patients through the real workflows and compare.", min=0
        ),
    ] = 0,
) -> None:
    """Forecast a pathway's workload: messages, alerts, nurse calls, doctor callbacks, SLAs.

    The real journey and ticket state machines, pathway templates, alert rules, triage,
    routing and SLA policy run on simulated time with synthetic patients; nothing is sent
    and the database is not touched.
    """
    settings = cli_settings()
    if plot is not None:
        _check_plotting(plot)  # before minutes of simulation, not after
    try:
        first_day = (
            dt.date.fromisoformat(start)
            if start
            else dt.datetime.now(ZoneInfo(settings.timezone)).date()
        )
    except ValueError:
        raise ValidationFailed(f"--start: {start!r} is not a date like 2026-12-07") from None
    plugins = Plugins.load(disabled=settings.disabled_plugins)
    catalog = plugins.pathway_catalog()
    template = _template(catalog, pathway, template_file)
    try:
        config = SimulationConfig(
            pathway=template.id,
            patients_per_day=patients_per_day,
            days=days,
            tail_days=tail_days,
            seed=seed,
            start=first_day,
            timezone=settings.timezone,
            behaviour=PatientBehaviour(
                answer_rate=answer_rate,
                answer_delay_hours=answer_delay_hours,
                abnormal_rate=abnormal_rate,
                message_rate=message_rate,
            ),
            staff=_staff(staff or []),
            default_staff=default_staff,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc'][-1:]).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValidationFailed(problems) from None

    import time

    started = time.perf_counter()
    simulator = build_simulator(config, template)
    with _progress(f"simulating {config.pathway}", not as_json) as progress:
        simulator.run(progress)
    result = simulator.result(time.perf_counter() - started)
    report: dict[str, Any] | None = None
    if verify:
        report = _verify(simulator, verify, settings, plugins, template, as_json)
    if plot is not None:
        plot_daily(result, plot)
    if as_json:
        data = result.model_dump(mode="json")
        if report is not None:
            data["verify"] = report
        emit_json(data)
    else:
        print_forecast(result, template)
        if plot is not None:
            print(f"\ndaily workload chart: {plot}")
        if report is not None:
            _print_verify(report)
    if report is not None and report["matched"] != report["checked"]:
        raise typer.Exit(1)


def _verify(
    simulator: Any,
    count: int,
    settings: Any,
    plugins: Plugins,
    template: PathwayTemplate,
    quiet: bool,
) -> dict[str, Any]:
    from suifang.workflows.simulation_verify import verify_on_test_server

    with _progress(f"verifying {count} patients on the real workflows", not quiet) as progress:
        report = cli_run(
            verify_on_test_server(
                simulator, count, settings, plugins, template=template, progress=progress
            )
        )
    return report.model_dump(mode="json")


def _print_verify(report: dict[str, Any]) -> None:
    print(
        f"\nVerify: {report['matched']} of {report['checked']} sampled patients ran the same "
        f"through the real workflows ({report['elapsed_seconds']:.1f} s)"
    )
    for patient in report["patients"]:
        if not patient["matches"]:
            print(f"  patient {patient['patient']}: " + "; ".join(patient["differences"]))
