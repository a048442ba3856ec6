"""``suifang surveys``: satisfaction survey campaigns — start one, record answers, results."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import typer
from sqlmodel import Session

from suifang.core.cli.context import cli_actor, cli_audit, cli_runtime
from suifang.core.cli.output import emit_json, print_table
from suifang.core.errors import ValidationFailed
from suifang.workflows.surveys import (
    AnswersIn,
    CampaignIn,
    SurveyResults,
    campaign_results,
    record_answers,
    start_campaign,
)

app = typer.Typer(help="Satisfaction survey campaigns (满意度调查).", no_args_is_help=True)


def _day(option: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


@app.command("start")
def start(
    name: Annotated[str, typer.Option(help="What the campaign is called.")],
    discharged_from: Annotated[str, typer.Option("--from", help="First discharge day.")],
    discharged_to: Annotated[str, typer.Option("--to", help="Last discharge day.")],
    department: Annotated[str | None, typer.Option(help="One department (default all).")] = None,
    rounds: Annotated[int, typer.Option(help="1: once; more: periodic.", min=1, max=120)] = 1,
    every_days: Annotated[
        int | None, typer.Option(help="Days between rounds (each round's period moves on).")
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="A channel, in order (repeat).")
    ] = None,
    survey: Annotated[str, typer.Option(help="A survey in templates/surveys/.")] = (
        "inpatient-satisfaction"
    ),
) -> None:
    """Survey the patients discharged --from … --to over the channels (needs `suifang up`)."""
    data = CampaignIn(
        name=name,
        survey=survey,
        department=department,
        discharged_from=_day("--from", discharged_from),
        discharged_to=_day("--to", discharged_to),
        rounds=rounds,
        every_days=every_days,
        **({"channels": channel} if channel else {}),
    )
    campaign = asyncio.run(start_campaign(cli_runtime(), data, actor=cli_actor()))
    cli_audit("surveys start", "surveys", [], str(campaign.id))
    print(f"campaign {campaign.id} started: {campaign.name} ({campaign.workflow_id})")


@app.command("answer")
def answer(
    invitation_id: Annotated[int, typer.Argument(help="The survey number in the message.", min=1)],
    scores: Annotated[list[str], typer.Argument(help="question=score, e.g. overall=5.")],
    comment: Annotated[str | None, typer.Option(help="What the patient said.")] = None,
) -> None:
    """Record what a patient answered (e.g. on a follow-up call)."""
    answers: dict[str, int] = {}
    for item in scores:
        question, _, value = item.partition("=")
        if not question or not value.strip().lstrip("-").isdigit():
            raise ValidationFailed(f"{item!r}: give question=score, e.g. overall=5")
        answers[question] = int(value)
    done = asyncio.run(
        record_answers(
            cli_runtime(),
            invitation_id,
            AnswersIn(answers=answers, comment=comment),
            actor=cli_actor(),
        )
    )
    cli_audit("surveys answer", "surveys", [done.patient_id], str(invitation_id))
    ticket = f", comment ticketed as #{done.ticket_id}" if done.ticket_id else ""
    print(f"invitation {invitation_id} answered{ticket}")


@app.command("results")
def results(
    campaign_id: Annotated[int, typer.Argument(help="The campaign's id.", min=1)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Response rates and mean scores, overall and by department, ward and doctor."""
    with Session(cli_runtime().engine) as session:
        found = campaign_results(session, campaign_id)
    cli_audit("surveys results", "surveys", [], str(campaign_id))
    if as_json:
        emit_json(found.model_dump(mode="json"))
        return
    _print(found)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _print(found: SurveyResults) -> None:
    print(
        f"{found.name} ({found.survey}, {found.status}): {found.invited} invited, "
        f"{found.delivered} delivered, {found.answered} answered ({_rate(found.response_rate)})"
    )
    print_table(["question", "mean"], list(found.mean_by_question.items()))
    for title, groups in (
        ("department", found.by_department),
        ("ward", found.by_ward),
        ("doctor", found.by_doctor),
    ):
        print()
        print_table(
            [title, "invited", "answered", "response", "overall"],
            [[g.group, g.invited, g.answered, _rate(g.response_rate), g.overall] for g in groups],
        )
    print(f"\ncomments ticketed as feedback: {found.comments_ticketed}")
