"""The survey campaign workflow: round after round, invite the round's cohort, sleep until the
next; then mark the campaign finished. Deterministic: every effect is an activity
(:class:`~suifang.workflows.surveys.SurveyActivities`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from suifang.workflows.surveys import CampaignInput, RoundInput, SurveyActivities

__all__ = ["SurveyCampaignWorkflow"]


@workflow.defn(name="SurveyCampaign")
class SurveyCampaignWorkflow:
    @workflow.run
    async def run(self, request: CampaignInput) -> int:
        """How many patients were invited, over every round."""
        invited = 0
        for number in range(request.rounds):
            if number:
                await workflow.sleep(timedelta(days=request.every_days or 1))
            invited += await workflow.execute_activity_method(
                SurveyActivities.send_survey_round,
                RoundInput(campaign_id=request.campaign_id, round=number),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            )
        await workflow.execute_activity_method(
            SurveyActivities.finish_campaign,
            request.campaign_id,
            start_to_close_timeout=timedelta(minutes=1),
        )
        return invited
